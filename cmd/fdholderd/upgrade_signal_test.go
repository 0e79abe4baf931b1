package main

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/cmd/fdholderd/internal/sigs"
	"github.com/fdholder/fdholder/internal/fdstore"
	"github.com/fdholder/fdholder/internal/testutil"
)

func TestHandoffEnvAgrees(t *testing.T) {
	if sigs.HandoffEnv != fdstore.HandoffEnv {
		t.Fatalf("sigs.HandoffEnv %q, fdstore.HandoffEnv %q: the upgraded image would not catch its signals early", sigs.HandoffEnv, fdstore.HandoffEnv)
	}
}

func msgIs(msg string) func(record) bool {
	return func(r record) bool { return r.str("msg") == msg }
}

const (
	msgChecking  = "upgrade: checking the new binary"
	msgExecuting = "upgrade: executing the new binary"
	msgStopped   = "stopped"
)

// upgradeOutcome is how a daemon came out of an upgrade that a signal hit.
type upgradeOutcome int

const (
	upgraded upgradeOutcome = iota // serving in the new image, every upgrade asked for done
	stopped                        // a graceful stop: exit 0 and the "stopped" line
	sigtermd                       // ended by SIGTERM in the Go runtime's own window (see TestSignalsDuringUpgrade)
)

// settle waits for the facts that end an upgrade hit by a signal: either
// the daemon serves in its new image with no upgrade under way (at least
// minChecks "checking" lines, and as many "executing" lines, each answered
// by a "recovered" line of the new image), or it has exited. It fails the test on any
// other end: an exit that is not a graceful stop, a death by a signal.
func settle(t testing.TB, d *daemon, minChecks int) upgradeOutcome {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		_, changed := d.log.snapshot()
		select {
		case <-d.exited:
			var ee *exec.ExitError
			if errors.As(d.err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
					return sigtermd
				}
				t.Fatalf("fdholderd ended during an upgrade: %v (want a graceful stop or still serving)", ee.ProcessState)
			}
			if d.count(msgIs(msgStopped)) == 0 {
				t.Fatalf("fdholderd exited 0 without its %q line", msgStopped)
			}
			return stopped
		default:
		}
		checks, execs, recs := d.count(msgIs(msgChecking)), d.count(msgIs(msgExecuting)), d.count(isRecovered("upgrade"))
		if checks >= minChecks && checks == execs && execs == recs && d.count(msgIs("upgrade abandoned: a stop signal came first")) == 0 {
			return upgraded
		}
		select {
		case <-changed:
		case <-d.exited:
		case <-timeout:
			t.Fatalf("the upgrade did not settle within %v: %d checks, %d executions, %d recoveries", waitTimeout, checks, execs, recs)
		}
	}
}

// waitExecuting waits for the old image's last line before execve, the
// one after the first execs, or for the daemon's exit.
func waitExecuting(t testing.TB, d *daemon, execs int) {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		_, changed := d.log.snapshot()
		if d.count(msgIs(msgExecuting)) > execs {
			return
		}
		select {
		case <-changed:
		case <-d.exited:
			return
		case <-timeout:
			t.Fatalf("no %q line within %v", msgExecuting, waitTimeout)
		}
	}
}

// TestSignalsDuringUpgrade is issue 8's defect 3: a SIGHUP 3-10 ms after
// SIGUSR2 killed the holder in 16-24 of 90 tries, because execve(2) resets
// a caught signal to its default action, which ends the process until the
// new image catches it. Each try here sends SIGUSR2 to a real fdholderd
// holding entries, then one of the signals it handles at a random moment:
// half the tries within 300 ms of SIGUSR2 (the check of the new binary,
// the hand-off), half within 10 ms of the old image's last line before
// execve (the exec and the new runtime's start). Whatever the moment, the
// holder is not killed: SIGHUP and SIGUSR2 leave it serving in the new
// image (same pid, every entry); SIGINT stops it gracefully (exit 0, its
// "stopped" line) or, arriving while it is ignored across execve, leaves
// it serving. SIGTERM does the same, but for one window no program can
// close: the Go runtime installs its own handlers at start, before any
// package is initialized, and exits on an uncaught SIGTERM whatever the
// inherited disposition (runtime/signal_unix.go, dieFromSignal); a
// SIGTERM in that fraction of a millisecond ends the holder as a stop
// would, without removing its socket file. It is counted and logged, never
// hidden: no other end is accepted.
func TestSignalsDuringUpgrade(t *testing.T) {
	const tries = 16
	for _, s := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGTERM} {
		t.Run(s.String(), func(t *testing.T) {
			testutil.CheckLeaks(t)
			dir := testutil.ShortDir(t)
			exe := copyBinary(t, dir)
			path := filepath.Join(dir, "h.sock")
			var d *daemon
			var c *fdholder.Client
			var before []fdholder.Entry
			begin := func() {
				os.Remove(filepath.Join(dir, "app.sock")) // the file of the last run's entry
				d = startServing(t, daemonOpts{socket: path, bin: exe})
				c = dial(t, path)
				before = storeEntries(t, c, dir, 3)
			}
			begin()
			counts := map[upgradeOutcome]int{}
			for i := range tries {
				pid := d.pid()
				execs, checks := d.count(msgIs(msgExecuting)), d.count(msgIs(msgChecking))
				// After a SIGINT the holder may be on its way out (a stop
				// it caught early): settle tells, so a failed send is not
				// an error here.
				d.cmd.Process.Signal(syscall.SIGUSR2)
				if i%2 == 0 {
					time.Sleep(rand.N(300 * time.Millisecond)) // a random moment, not a wait for anything
				} else {
					waitExecuting(t, d, execs)
					time.Sleep(rand.N(10 * time.Millisecond))
				}
				d.cmd.Process.Signal(s)
				// A SIGUSR2 sent during an upgrade is dropped, or runs one
				// more after it: that the trigger's own upgrade ran cannot
				// be told apart, so only a settled holder is asked for.
				want := checks + 1
				if s == syscall.SIGUSR2 {
					want = checks
				}
				out := settle(t, d, want)
				stop := s == syscall.SIGINT || s == syscall.SIGTERM
				// A stop signal the new image caught early stops it as soon
				// as it serves: the graceful stop, a moment later. Until it
				// does, it may answer a request or two, so a list that
				// succeeds proves nothing; only a list that fails is
				// decided, by the exit that must follow it.
				var after []fdholder.Entry
				if out == upgraded {
					var err error
					after, err = c.List(testCtx(t))
					if err != nil {
						if !stop {
							t.Fatalf("try %d: list after the upgrade: %v", i, err)
						}
						if code := d.wait(); code != 0 || d.count(msgIs(msgStopped)) == 0 {
							t.Fatalf("try %d: list failed (%v) and fdholderd exited %d", i, err, code)
						}
						out = stopped
					}
				}
				counts[out]++
				if out == sigtermd && s != syscall.SIGTERM {
					t.Fatalf("try %d: %v, and fdholderd died of SIGTERM", i, s)
				}
				if out != upgraded {
					if !stop {
						t.Fatalf("try %d: %v stopped the holder", i, s)
					}
					c.Close()
					begin()
					continue
				}
				if d.pid() != pid {
					t.Fatalf("try %d: pid %d, want %d", i, d.pid(), pid)
				}
				if !reflect.DeepEqual(after, before) {
					t.Fatalf("try %d: after the upgrade:\n got %+v\nwant %+v", i, after, before)
				}
				if stop {
					// Whether a stop is still on its way cannot be told
					// (a signal caught, or one dropped while ignored across
					// execve, look the same from here): end this holder
					// and take a fresh one for the next try.
					retire(t, d)
					c.Close()
					begin()
				}
			}
			t.Logf("%v during an upgrade, %d tries: %d served on in the new image, %d stopped gracefully, %d ended by SIGTERM in the Go runtime's window",
				s, tries, counts[upgraded], counts[stopped], counts[sigtermd])
			c.Close()
			d.stop()
		})
	}
}

// retire ends a holder that may already be stopping of its own accord:
// it sends SIGTERM, and accepts a graceful stop (exit 0), one that
// SIGTERM cut short as a second signal does (exit 1, forced), or, for a
// SIGTERM that came after the holder released its signals on the way
// out, death by it; in every case only after the "stopped" line, which
// says the holder closed its entries and removed its socket file.
func retire(t testing.TB, d *daemon) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(waitTimeout):
		t.Fatalf("fdholderd did not exit within %v of SIGTERM", waitTimeout)
	}
	if d.count(msgIs(msgStopped)) == 0 {
		t.Fatalf("fdholderd ended (%v) without its %q line", d.err, msgStopped)
	}
	var ee *exec.ExitError
	if d.err == nil || !errors.As(d.err, &ee) {
		return
	}
	ws, _ := ee.Sys().(syscall.WaitStatus)
	if !(ws.Exited() && ws.ExitStatus() == 1) && !(ws.Signaled() && ws.Signal() == syscall.SIGTERM) {
		t.Fatalf("fdholderd ended %v after SIGTERM; want exit 0, exit 1 (forced) or SIGTERM after its stop", ee.ProcessState)
	}
}

// TestStopSignalBeforeExec: a SIGTERM that comes while the old image
// checks the new binary is not lost in the execve: the holder stops
// gracefully instead of upgrading. The new "binary" is a script that
// holds its --check until the test has sent SIGTERM (a fact: the file
// gate exists), then runs the real one.
func TestStopSignalBeforeExec(t *testing.T) {
	testutil.CheckLeaks(t)
	dir := testutil.ShortDir(t)
	real := copyBinary(t, dir)
	exe := filepath.Join(dir, "fdholderd-wrapped")
	replaceBinary(t, exe, copyOf(t), 0o755)
	path := filepath.Join(dir, "h.sock")
	d := startServing(t, daemonOpts{socket: path, bin: exe})
	c := dial(t, path)
	storeEntries(t, c, dir, 1)

	gate := filepath.Join(dir, "gate")
	replaceBinary(t, exe, text("#!/bin/sh\n"+
		"if [ \"$1\" = --check ]; then while [ ! -e "+gate+" ]; do sleep 0.01; done; fi\n"+
		"exec "+real+" \"$@\"\n"), 0o755)
	d.signal(syscall.SIGUSR2)
	d.waitFor("the check", msgIs(msgChecking))
	d.signal(syscall.SIGTERM)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitFor("the abandoned upgrade", msgIs("upgrade abandoned: a stop signal came first"))
	c.Close()
	if code := d.wait(); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	d.waitFor("the stopped line", msgIs(msgStopped))
	if n := d.count(isRecovered("upgrade")); n != 0 {
		t.Errorf("the new binary ran (%d recoveries); the stop should have come first", n)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %v; a graceful stop removes it", path, err)
	}
}
