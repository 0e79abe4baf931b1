package sigs

import (
	"os"
	"os/signal"
	"syscall"
)

// HandoffEnv is fdstore.HandoffEnv, spelled out so that this package
// imports nothing that initializes late (a test checks they agree).
const HandoffEnv = "FDHOLDER_HANDOFF_FD"

// Handled are the signals fdholderd handles.
var Handled = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2}

// Set is where the handled signals arrive.
type Set struct {
	Stop    chan os.Signal // SIGTERM, SIGINT: the first stops gracefully, a second cuts that short
	Reload  chan os.Signal // SIGHUP: reload the policy
	Upgrade chan os.Signal // SIGUSR2: upgrade in place
}

// early is the Set caught at init in a process an upgrade started.
var early *Set

func init() {
	// Before execve(2) the upgrading image set every handled signal to
	// SIG_IGN, which execve keeps (signal(7)), and which the Go runtime
	// keeps for SIGHUP and SIGINT until Notify. Catch them all now, as
	// early as a Go program can: this package's only dependencies are
	// os/signal's, so it is among the first packages initialized.
	if os.Getenv(HandoffEnv) != "" {
		early = newSet()
		early.Catch()
	}
}

func newSet() *Set {
	return &Set{Stop: make(chan os.Signal, 2), Reload: make(chan os.Signal, 1), Upgrade: make(chan os.Signal, 1)}
}

// Take returns the Set caught at init in a process an upgrade started
// (with whatever arrived since), or a new Set catching from now.
func Take() *Set {
	if s := early; s != nil {
		early = nil
		return s
	}
	s := newSet()
	s.Catch()
	return s
}

// Catch (again) delivers the handled signals to s instead of their
// default action.
func (s *Set) Catch() {
	signal.Notify(s.Stop, syscall.SIGTERM, syscall.SIGINT)
	signal.Notify(s.Reload, syscall.SIGHUP)
	signal.Notify(s.Upgrade, syscall.SIGUSR2)
}

// Ignore sets every handled signal to SIG_IGN, for an execve(2) that must
// not die of one: a caught signal's handler is reset to SIG_DFL by
// execve, which for all four ends the process before the new image can
// catch it, while SIG_IGN is kept. Catch undoes it.
func (s *Set) Ignore() { signal.Ignore(Handled...) }

// StopPending reports whether a stop signal waits in s.Stop.
func (s *Set) StopPending() bool { return len(s.Stop) > 0 }

// Release stops catching: the handled signals have their default actions
// again.
func (s *Set) Release() {
	signal.Stop(s.Stop)
	signal.Stop(s.Reload)
	signal.Stop(s.Upgrade)
}
