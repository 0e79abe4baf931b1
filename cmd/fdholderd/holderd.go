package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/cmd/fdholderd/internal/sigs"
	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/sdnotify"
	"github.com/fdholder/fdholder/internal/version"
)

// shutdownGrace bounds the wait for requests in flight after SIGTERM. A
// request takes microseconds; one still running after this is stuck (a
// client that does not read its reply, say), and systemd's own stop timeout
// (TimeoutStopSec, 90s by default) is far longer.
const shutdownGrace = 10 * time.Second

// errForced: a second signal cut the graceful shutdown short.
var errForced = errors.New("shutdown cut short by a second signal")

// run is the whole program: it parses args, serves until SIGTERM or SIGINT,
// and returns the exit status (0 clean, 1 failure, 2 usage error).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "fdholderd: %v\nRun 'fdholderd --help' for usage.\n", err)
		return 2
	}
	if cfg.version {
		io.WriteString(stdout, version.Line("fdholderd"))
		return 0
	}
	if cfg.check {
		return check(cfg, stdout, stderr)
	}
	log, audit := newLogger(cfg.logFormat, cfg.logLevel, stderr)
	err = serve(ctx, cfg, log, audit)
	log.Sync() // and audit's buffered lines: they share the buffer
	if err != nil {
		fmt.Fprintf(stderr, "fdholderd: %v\n", err)
		return 1
	}
	return 0
}

// serve runs the holder until a signal or a failure of a listener, then
// shuts it down. The error it returns is the reason for a non-zero exit.
// SIGUSR2 upgrades it in place (see upgrade.go); serve returns from an
// upgrade only if it failed, and then keeps serving.
//
// audit is the server's logger, for its audit line per request (see
// newLogger); log is for everything else.
func serve(ctx context.Context, cfg config, log, audit *zap.Logger) error {
	// Caught from the start, even SIGHUP without --policy, whose default
	// action would end the holder; in an upgraded image, from its first
	// moment (package sigs).
	sig := sigs.Take()
	defer sig.Release()

	// A policy that does not load stops the start, before any socket exists.
	access, err := loadAccess(cfg, log)
	if err != nil {
		return err
	}
	limits := cfg.limits
	raiseNoFile(log, limits.WithDefaults())
	sockOpts, err := socketOptions(cfg)
	if err != nil {
		return err
	}

	rec, file, source, err := passedDescriptors(log)
	if err != nil {
		return err
	}
	mirror := newMirror(log, rec.NextSeq)
	nextSeq := rec.NextSeq // metadata names for an upgrade without a mirror

	// The registry reports changes to the notifier, which reads the count
	// back from the registry on its own goroutine: OnChange never blocks.
	var reg *holder.Registry
	notifier := sdnotify.New(log, func() int { return reg.Len() })
	opts := holder.RegistryOptions{Logger: log, OnChange: func(int) { notifier.Changed() }}
	if mirror != nil {
		opts.Observer = mirror
	}
	reg = holder.NewRegistry(opts)
	defer reg.Close()

	metricsCtx, stopMetrics := context.WithCancel(ctx)
	defer stopMetrics()
	metricsObs, err := serveMetrics(metricsCtx, cfg, log, reg, mirror)
	if err != nil {
		return err
	}

	lns, err := recoverFromFDStore(log, reg, mirror, rec, source)
	if err != nil {
		return err
	}
	activated := len(lns) > 0
	var sock *ctlsock.Socket // the socket this process (or the one it upgraded) bound, nil when activated
	if file != nil && len(lns) == 1 {
		// An upgrade of a holder that had bound its own socket: it is
		// still ours to remove on exit.
		sock = ctlsock.Adopt(file.Path, file.Dev, file.Ino, lns[0])
		activated = false
	} else if activated {
		if cfg.socket != "" {
			log.Warn("socket activation: serving the sockets passed by systemd, not --socket", zap.String("ignored_path", cfg.socket))
		}
		if cfg.socketMode != 0 || cfg.socketGroup != "" {
			log.Warn("socket activation: --socket-mode and --socket-group are ignored; set SocketMode= and SocketGroup= in the .socket unit")
		}
	} else {
		path := cfg.socket
		if path == "" {
			path = fdholder.SocketPath()
		}
		sock, err = ctlsock.ListenWith(ctx, path, sockOpts)
		if err != nil {
			return err
		}
		if sock.Replaced {
			log.Info("replaced a stale socket file", zap.String("path", path))
		}
		lns = []*net.UnixListener{sock.Listener}
	}

	wdCtx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	sdnotify.Watchdog(wdCtx, log, func() { reg.Len() })

	// The server is replaced after a failed upgrade; a policy reload goes
	// to the one serving, and a new one starts with the policy in force.
	var srv *holder.Server
	var srvMu sync.Mutex // guards srv and access for the reload goroutine
	stopReload := reloadOnHUP(cfg, log, func(a holder.Access) {
		srvMu.Lock()
		defer srvMu.Unlock()
		access = a
		srv.SetAccess(a)
	}, sig.Reload)
	defer stopReload()
	// Serve must not see the signal: its ctx closes connections at once,
	// where a signal means a graceful Shutdown.
	serveCtx := context.WithoutCancel(ctx)
	var errc chan error
	running := 0
	startServing := func() {
		srvMu.Lock()
		srv = holder.NewServer(reg, holder.ServerOptions{Logger: audit, Access: access, Limits: limits, Requests: metricsObs})
		srvMu.Unlock()
		errc = make(chan error, len(lns))
		running = len(lns)
		for _, ln := range lns {
			path := ln.Addr().String()
			if sock != nil {
				path = sock.Path // the listener knows only the name it was bound to before the rename
			}
			log.Info("serving", zap.String("path", path), zap.Int("pid", os.Getpid()), zap.Bool("activated", activated))
			go func() { errc <- srv.Serve(serveCtx, ln) }()
		}
	}
	startServing()
	notifier.Ready()

	var failure error
wait:
	for {
		select {
		case s := <-sig.Stop:
			log.Info("shutting down", zap.String("reason", s.String()+" signal received"))
			break wait
		case err := <-errc:
			running--
			failure = fmt.Errorf("serve: %w", err)
			log.Info("shutting down", zap.String("reason", "a listener failed"))
			break wait
		case <-sig.Upgrade:
			stopped, next, err := upgrade(ctx, log, sig, srv, lns, sock, errc, running, reg, mirror, &nextSeq)
			if !stopped {
				// Nothing was stopped: the check failed.
				log.Error("upgrade refused; still serving with every entry", zap.Error(err))
				continue
			}
			if next == nil {
				running = 0
				failure = fmt.Errorf("upgrade: %w", err)
				log.Error("upgrade failed and the control sockets are lost; exiting", zap.Error(err))
				break wait
			}
			// The server was stopped and execve failed, or was not
			// tried because a stop signal came: serve again on the same
			// control sockets, which never stopped queueing (and stop
			// gracefully at once if that is what was asked).
			if errors.Is(err, errStopSignal) {
				log.Info("upgrade abandoned: a stop signal came first", zap.Error(err))
			} else {
				log.Error("upgrade failed; serving again with every entry", zap.Error(err))
			}
			lns = next
			startServing()
		}
	}

	// From here a second stop signal cuts the grace period short; sig
	// catches it until serve returns, so that it never finds the default
	// action, which would end the process before it cleans up.
	notifier.Stopping()
	grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var forced atomic.Bool
	shutdownDone := make(chan struct{})
	go func() {
		select {
		case s := <-sig.Stop:
			log.Warn("second signal: closing the remaining connections now", zap.String("signal", s.String()))
			forced.Store(true)
			cancel()
		case <-shutdownDone:
		}
	}()
	if err := srv.Shutdown(grace); err != nil {
		log.Warn("requests still in flight were cut off", zap.Error(err))
	}
	close(shutdownDone)
	for ; running > 0; running-- {
		if err := <-errc; !errors.Is(err, holder.ErrServerClosed) && failure == nil {
			failure = fmt.Errorf("serve: %w", err)
		}
	}
	held := reg.Len()
	reg.Close()

	if sock != nil {
		removed, err := sock.RemoveFile()
		switch {
		case err != nil:
			log.Warn("cannot remove the socket file", zap.String("path", sock.Path), zap.Error(err))
		case !removed:
			log.Info("the socket file is no longer ours; left in place", zap.String("path", sock.Path))
		}
	}
	log.Info("stopped", zap.Int("entries_closed", held), zap.Bool("forced", forced.Load()))
	if failure == nil && forced.Load() {
		failure = errForced
	}
	return failure
}
