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

	"github.com/fdholder/fdholder/cmd/fdholderd/internal/sigs"
	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/fdstore"
	"github.com/fdholder/fdholder/internal/holder"
)

// checkTimeout bounds the run of the new binary with --check before an
// upgrade.
const checkTimeout = 10 * time.Second

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
func addEntries(h *fdstore.Handoff, reg *holder.Registry, mirror *fdstore.Mirror, nextSeq *uint64) (release func(), err error) {
	held := reg.Snapshot(nil)
	release = func() {
		for _, e := range held {
			e.Handle.Release()
		}
	}
	for _, e := range held {
		var name string
		if mirror != nil {
			var ok bool
			if name, ok = mirror.MetaName(e.ID); !ok {
				name = mirror.ReserveName() // its store had failed
			}
		} else {
			name = fdstore.MetaName(*nextSeq)
			*nextSeq++
		}
		if err := h.AddEntry(fdstore.Meta{Entry: e.Entry}, e.Handle.FD().Sysfd(), name); err != nil {
			return release, fmt.Errorf("entry %q: %w", e.Entry.Name, err)
		}
	}
	return release, nil
}

// errStopSignal: SIGTERM or SIGINT came during the upgrade, before
// execve; the holder stops instead (gracefully, with every client told).
var errStopSignal = errors.New("a stop signal came before execve; not executing the new binary")

// execUpgrade replaces the process with exe (execve(2): same pid, so
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
func execUpgrade(log *zap.Logger, exe string, h *fdstore.Handoff, sig *sigs.Set) error {
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
	log.Info("upgrade: executing the new binary", zap.String("path", exe), zap.Int("descriptors", h.Len()))
	log.Sync()
	sig.Ignore()
	if sig.StopPending() {
		// Caught before the Ignore: executing would lose it.
		sig.Catch()
		return errStopSignal
	}
	err = syscall.Exec(exe, os.Args, env)
	sig.Catch()
	return fmt.Errorf("execve %s: %w", exe, err)
}

// errNoExecutable is the upgrade's error when the running binary's path is
// unknown.
var errNoExecutable = errors.New("cannot find the path of the running binary")

// upgrade replaces the running holder with the binary at its own path,
// keeping every entry and the control sockets (SIGUSR2). It checks the new
// binary first; if the check fails it returns nil listeners and the server
// untouched. Otherwise it stops the server gracefully (the requests in
// flight finish; open connections are closed, and clients reconnect),
// collects the descriptors and executes the binary. It returns only if
// that failed: then the server is stopped and next are fresh listeners on
// the same control sockets, to serve again (nil if even that failed: the
// holder must then exit, and systemd's store keeps the entries).
// Connections made meanwhile wait in the control sockets' accept queue,
// which stays open throughout.
func upgrade(ctx context.Context, log *zap.Logger, sig *sigs.Set, srv *holder.Server, lns []*net.UnixListener, sock *ctlsock.Socket, errc chan error, running int,
	reg *holder.Registry, mirror *fdstore.Mirror, nextSeq *uint64) (stopped bool, next []*net.UnixListener, err error) {
	exe, err := os.Executable()
	if err != nil {
		return false, nil, fmt.Errorf("%w: %w", errNoExecutable, err)
	}
	log.Info("upgrade: checking the new binary", zap.String("path", exe))
	if err := checkBinary(ctx, exe); err != nil {
		return false, nil, err
	}
	// The hand-off's duplicates of the control sockets keep them listening
	// while the server closes its listeners.
	h := fdstore.NewHandoff()
	for _, ln := range lns {
		rc, cerr := ln.SyscallConn()
		if cerr == nil {
			cerr = rc.Control(func(fd uintptr) { err = h.AddControl(int(fd)) })
		}
		if err = errors.Join(cerr, err); err != nil {
			h.Close()
			return false, nil, fmt.Errorf("control socket: %w", err)
		}
	}
	defer h.Close() // reached only if execve failed
	if sock != nil {
		dev, ino := sock.Identity()
		h.SetSocketFile(fdstore.SocketFile{Path: sock.Path, Dev: dev, Ino: ino})
	}

	grace, cancel := context.WithTimeout(ctx, shutdownGrace)
	defer cancel()
	// Handoff, not Shutdown: every client waits at the control socket
	// until the new binary serves, so the upgrade waits for no peer that
	// does not read its replies (issue 8).
	if err := srv.Handoff(grace); err != nil {
		log.Warn("upgrade: requests still in flight were cut off", zap.Error(err))
	}
	for ; running > 0; running-- {
		<-errc
	}

	// Listeners to serve again with if anything below fails.
	next, lerr := h.Listeners()
	if lerr != nil {
		return true, nil, fmt.Errorf("control socket: %w", lerr)
	}
	release, err := addEntries(h, reg, mirror, nextSeq)
	if err == nil {
		err = execUpgrade(log, exe, h, sig)
	}
	// execve failed or a stop signal came first: close-on-exec again on the lent descriptors while
	// they are still open, then let them go.
	h.Close()
	release()
	return true, next, err
}
