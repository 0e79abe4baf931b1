package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/fdholder/fdholder/internal/fdstore"
)

// checkTimeout bounds the run of the new binary with --check before an
// upgrade.
const checkTimeout = 10 * time.Second

// errNoExecutable is the upgrade's error when the running binary's path is
// unknown.
var errNoExecutable = errors.New("cannot find the path of the running binary")

// upgrade handles SIGUSR2: it replaces the running holder with the binary
// at its own path, keeping every entry and the control sockets (replace).
// If that fails, the holder goes on: with the same server if the new binary
// was refused, else with a new server on the same control sockets, which
// never stopped queueing (and stops gracefully at once if a stop signal is
// why the exec was not tried). It returns an error only when the holder
// cannot go on: the control sockets are lost, and it must exit (systemd's
// store keeps the entries).
func (d *holderd) upgrade(ctx context.Context) error {
	stopped, next, err := d.replace(ctx)
	switch {
	case !stopped:
		d.log.Error("upgrade refused; still serving with every entry", zap.Error(err))
		return nil
	case next == nil:
		d.log.Error("upgrade failed and the control sockets are lost; exiting", zap.Error(err))
		return fmt.Errorf("upgrade: %w", err)
	case errors.Is(err, errStopSignal):
		d.log.Info("upgrade abandoned: a stop signal came first", zap.Error(err))
	default:
		d.log.Error("upgrade failed; serving again with every entry", zap.Error(err))
	}
	d.lns = next
	d.serve()
	return nil
}

// replace is the upgrade itself. It checks the new binary first; if the
// check fails it returns (stopped false) with the server untouched.
// Otherwise it stops the server gracefully (the requests in flight finish;
// open connections are closed, and clients reconnect), collects the
// descriptors and executes the binary. It returns only if that failed: then the server is stopped and
// next are fresh listeners on the same control sockets, to serve again
// (nil if even that failed). Connections made meanwhile wait in the
// control sockets' accept queue, which stays open throughout.
func (d *holderd) replace(ctx context.Context) (stopped bool, next []*net.UnixListener, err error) {
	exe, err := os.Executable()
	if err != nil {
		return false, nil, fmt.Errorf("%w: %w", errNoExecutable, err)
	}
	d.log.Info("upgrade: checking the new binary", zap.String("path", exe))
	if err := checkBinary(ctx, exe); err != nil {
		return false, nil, err
	}
	// The hand-off's duplicates of the control sockets keep them listening
	// while the server closes its listeners.
	h := fdstore.NewHandoff()
	defer h.Close() // on every return (a successful execve never returns); a second Close does nothing
	for _, ln := range d.lns {
		if err := h.AddControl(ln); err != nil {
			return false, nil, fmt.Errorf("control socket: %w", err)
		}
	}
	if d.sock != nil {
		dev, ino := d.sock.Identity()
		h.SetSocketFile(fdstore.SocketFile{Path: d.sock.Path, Dev: dev, Ino: ino})
	}

	grace, cancel := context.WithTimeout(ctx, shutdownGrace)
	defer cancel()
	// Handoff, not Shutdown: every client waits at the control socket
	// until the new binary serves, so the upgrade waits for no peer that
	// does not read its replies (issue 8).
	if err := d.srv.Handoff(grace); err != nil {
		d.log.Warn("upgrade: requests still in flight were cut off", zap.Error(err))
	}
	for ; d.running > 0; d.running-- {
		<-d.errc
	}

	// Listeners to serve again with if anything below fails.
	next, lerr := h.Listeners()
	if lerr != nil {
		return true, nil, fmt.Errorf("control socket: %w", lerr)
	}
	release, err := d.addEntries(h)
	if err == nil {
		err = d.exec(exe, h)
	}
	// execve failed or a stop signal came first: close-on-exec again on the lent descriptors while
	// they are still open, then let them go.
	h.Close()
	release()
	return true, next, err
}

// checkBinary makes sure the binary at exe can run before the holder
// replaces itself with it: it is a regular, executable file, and running
// it with --check and the running holder's own flags exits 0 (so a new
// binary that would refuse those flags, the policy file or the socket
// directory is refused too). A holder that executed a broken binary would
// be gone with every entry; one that refuses keeps serving.
func checkBinary(ctx context.Context, exe string) error {
	fi, err := os.Stat(exe)
	if err != nil {
		return fmt.Errorf("new binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("new binary %s: not a regular file (%v)", exe, fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("new binary %s: not executable (mode %v)", exe, fi.Mode().Perm())
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, exe, append([]string{"--check"}, os.Args[1:]...)...).CombinedOutput()
	if err != nil {
		if out = bytes.TrimSpace(out); len(out) > 0 {
			return fmt.Errorf("new binary %s --check: %w: %s", exe, err, out)
		}
		return fmt.Errorf("new binary %s --check: %w", exe, err)
	}
	return nil
}

// addEntries adds every held entry to h: its socket (lent: the registry's
// own descriptor, no duplicate) and its metadata, named as in the file
// descriptor store (the mirror's metadata names when it has them, so that
// the new binary drops those from the store once it has stored the entries
// again). The returned release lets go of the references that keep the
// lent descriptors open: call it only after h.Close, if execve failed.
func (d *holderd) addEntries(h *fdstore.Handoff) (release func(), err error) {
	held := d.reg.Snapshot(nil)
	release = func() {
		for _, e := range held {
			e.Handle.Release()
		}
	}
	for _, e := range held {
		var name string
		if d.mirror != nil {
			var ok bool
			if name, ok = d.mirror.MetaName(e.ID); !ok {
				name = d.mirror.ReserveName() // its store had failed
			}
		} else {
			name = fdstore.MetaName(d.nextSeq)
			d.nextSeq++
		}
		if err := h.AddEntry(fdstore.Meta{Entry: e.Entry}, e.Handle.FD(), name); err != nil {
			return release, fmt.Errorf("entry %q: %w", e.Entry.Name, err)
		}
	}
	return release, nil
}

// errStopSignal: SIGTERM or SIGINT came during the upgrade, before
// execve; the holder stops instead (gracefully, with every client told).
var errStopSignal = errors.New("a stop signal came before execve; not executing the new binary")

// exec replaces the process with exe (execve(2): same pid, so
// systemd keeps tracking it), passing h's descriptors. It returns only if
// execve failed or a stop signal came first, with every descriptor of h
// still open (the caller closes them) and sig catching again.
//
// Across execve a caught signal's handler is reset to SIG_DFL, whose action
// for SIGTERM, SIGINT, SIGHUP and SIGUSR2 ends the process, until the new
// image catches it; an ignored one stays ignored (signal(7)). So every
// handled signal is set to SIG_IGN just before execve. The Go runtime of
// the new image keeps SIGHUP and SIGINT ignored until Notify, and lets an
// uncaught SIGUSR2 pass; package sigs catches all four in its init. What
// arrives in between is dropped: a reload is moot (the new image reads the
// policy), an upgrade is what is running. A SIGTERM that arrives after the
// new runtime installs its own handlers and before that init (a fraction
// of a millisecond) still ends the process: the Go runtime exits on an
// uncaught SIGTERM whatever the inherited disposition, and gives a program
// no earlier hook (docs/operations.md has the figures).
func (d *holderd) exec(exe string, h *fdstore.Handoff) error {
	assign, err := h.Env()
	if err != nil {
		return err
	}
	env := []string{assign}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, fdstore.HandoffEnv+"=") {
			env = append(env, kv)
		}
	}
	d.log.Info("upgrade: executing the new binary", zap.String("path", exe), zap.Int("descriptors", h.Len()))
	d.log.Sync()
	d.sig.Ignore()
	if d.sig.StopPending() {
		// Caught before the Ignore: executing would lose it.
		d.sig.Catch()
		return errStopSignal
	}
	err = syscall.Exec(exe, os.Args, env)
	d.sig.Catch()
	return fmt.Errorf("execve %s: %w", exe, err)
}
