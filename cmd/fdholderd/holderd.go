package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fdholder/fdholder/cmd/fdholderd/internal/sigs"
	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/fdstore"
	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/sdnotify"
)

// shutdownGrace bounds the wait for requests in flight after SIGTERM. A
// request takes microseconds; one still running after this is stuck (a
// client that does not read its reply, say), and systemd's own stop timeout
// (TimeoutStopSec, 90s by default) is far longer.
const shutdownGrace = 10 * time.Second

// errForced: a second signal cut the graceful shutdown short.
var errForced = errors.New("shutdown cut short by a second signal")

// holderd is a running fdholderd: the registry, the server on the control
// sockets, and everything wired around them. Its life is run: start, then
// loop until a stop signal or a failed listener, then shutdown. loop hands
// SIGUSR2 to upgrade (upgrade.go); SIGHUP is reload's (policy.go), on a
// goroutine of its own.
//
// Only run's goroutine touches the fields, except srv and access, which
// reload reads and sets under mu.
type holderd struct {
	cfg   config
	log   *zap.Logger // fdholderd's own lines
	audit *zap.Logger // the server's audit line per request (newLogger)
	sig   *sigs.Set

	reg      *holder.Registry
	mirror   *fdstore.Mirror // the file descriptor store's copy; nil without NOTIFY_SOCKET
	nextSeq  uint64          // metadata names for an upgrade without a mirror
	notifier *sdnotify.Notifier
	requests holder.RequestObserver // the metrics' observer; nil without --metrics-address

	lns       []*net.UnixListener // the control sockets' listeners, served by srv
	sock      *ctlsock.Socket     // the socket this process (or the one it upgraded) bound; nil when activated
	activated bool                // lns are systemd's (socket activation)
	serveCtx  context.Context     // Serve's: never cancelled, see start

	mu     sync.Mutex // guards srv and access for reload
	srv    *holder.Server
	access holder.Access

	errc    chan error // each Serve's return
	running int        // Serve calls not yet returned on errc

	cleanup []func() // undone by close, last first
}

func newHolderd(cfg config, log, audit *zap.Logger) *holderd {
	return &holderd{cfg: cfg, log: log, audit: audit}
}

// run starts the holder, serves until a signal or a failure of a
// listener, then shuts it down. The error it returns is the reason for a
// non-zero exit. An upgrade returns from run only if it failed for good.
func (d *holderd) run(ctx context.Context) error {
	defer d.close()
	if err := d.start(ctx); err != nil {
		return err
	}
	return d.shutdown(d.loop(ctx))
}

// onClose adds f to what close undoes.
func (d *holderd) onClose(f func()) { d.cleanup = append(d.cleanup, f) }

// close undoes what start set up, in reverse order: the reload goroutine,
// the watchdog, the metrics, the registry, and last the signals, so that
// a second stop signal never finds its default action before the holder
// has cleaned up.
func (d *holderd) close() {
	for i := len(d.cleanup) - 1; i >= 0; i-- {
		d.cleanup[i]()
	}
	d.cleanup = nil
}

// start brings the holder up: the policy, the descriptor limit, the
// descriptors passed at start (an upgrade's or systemd's), the registry
// with its file descriptor store mirror and readiness notifier, the
// metrics, the recovered entries, the control sockets, the watchdog and
// the reload goroutine; then it serves and sends READY=1. On an error what
// it set up is left for close, and the descriptors passed at start that
// nothing took over yet are closed.
func (d *holderd) start(ctx context.Context) error {
	// Caught from the start, even SIGHUP without --policy, whose default
	// action would end the holder; in an upgraded image, from its first
	// moment (package sigs).
	d.sig = sigs.Take()
	d.onClose(d.sig.Release)

	// A policy that does not load stops the start, before any socket exists.
	access, err := loadAccess(d.cfg, d.log)
	if err != nil {
		return err
	}
	d.access = access
	raiseNoFile(d.log, d.cfg.limits.WithDefaults())
	sockOpts, err := socketOptions(d.cfg)
	if err != nil {
		return err
	}

	rec, file, source, err := passedDescriptors(d.log)
	if err != nil {
		return err
	}
	// start owns rec's descriptors until recoverEntries takes them: a
	// failure before that closes them (the entries live on in systemd's
	// store, if there is one; the failed start loses nothing else).
	recovering := true
	defer func() {
		if recovering {
			rec.Close()
		}
	}()
	d.openMirror(rec.NextSeq)
	d.nextSeq = rec.NextSeq

	// The registry reports changes to the notifier, which reads the count
	// back from the registry on its own goroutine: OnChange never blocks.
	d.notifier = sdnotify.New(d.log, func() int { return d.reg.Len() })
	opts := holder.RegistryOptions{Logger: d.log, OnChange: func(int) { d.notifier.Changed() }}
	if d.mirror != nil {
		opts.Observer = d.mirror
	}
	d.reg = holder.NewRegistry(opts)
	d.onClose(d.reg.Close)

	metricsCtx, stopMetrics := context.WithCancel(ctx)
	d.onClose(stopMetrics)
	if d.requests, err = serveMetrics(metricsCtx, d.cfg, d.log, d.reg, d.mirror); err != nil {
		return err
	}

	recovering = false
	lns, err := d.recoverEntries(rec, source)
	if err != nil {
		return err
	}
	if err := d.listen(ctx, lns, file, sockOpts); err != nil {
		return err
	}

	wdCtx, stopWatchdog := context.WithCancel(ctx)
	d.onClose(stopWatchdog)
	sdnotify.Watchdog(wdCtx, d.log, func() { d.reg.Len() })

	d.onClose(d.reloadOnHUP())
	// Serve must not see the signal: its ctx closes connections at once,
	// where a signal means a graceful Shutdown.
	d.serveCtx = context.WithoutCancel(ctx)
	d.serve()
	d.notifier.Ready()
	return nil
}

// serve starts a new server on every control listener, with the policy in
// force. It runs at start and again after a failed upgrade, whose server
// was stopped.
func (d *holderd) serve() {
	d.mu.Lock()
	srv := holder.NewServer(d.reg, holder.ServerOptions{Logger: d.audit, Access: d.access, Limits: d.cfg.limits, Requests: d.requests})
	d.srv = srv
	d.mu.Unlock()
	errc := make(chan error, len(d.lns))
	d.errc, d.running = errc, len(d.lns)
	for _, ln := range d.lns {
		path := ln.Addr().String()
		if d.sock != nil {
			path = d.sock.Path // the listener knows only the name it was bound to before the rename
		}
		d.log.Info("serving", zap.String("path", path), zap.Int("pid", os.Getpid()), zap.Bool("activated", d.activated))
		go func() { errc <- srv.Serve(d.serveCtx, ln) }()
	}
}

// loop waits for what ends the serving: a stop signal (nil) or a
// listener's failure (its error). SIGUSR2 upgrades in place meanwhile; an
// upgrade that failed for good ends the loop with its error.
func (d *holderd) loop(ctx context.Context) error {
	for {
		select {
		case s := <-d.sig.Stop:
			d.log.Info("shutting down", zap.String("reason", s.String()+" signal received"))
			return nil
		case err := <-d.errc:
			d.running--
			d.log.Info("shutting down", zap.String("reason", "a listener failed"))
			return fmt.Errorf("serve: %w", err)
		case <-d.sig.Upgrade:
			if err := d.upgrade(ctx); err != nil {
				return err
			}
		}
	}
}

// shutdown stops the holder gracefully: STOPPING=1, then the server's
// Shutdown (the requests in flight finish, at most shutdownGrace; a second
// stop signal cuts that short), then every held entry is closed and the
// control socket's file removed if it is still ours. It returns failure,
// the reason loop ended, or else the first error of a Serve, or errForced.
func (d *holderd) shutdown(failure error) error {
	// From here a second stop signal cuts the grace period short; sig
	// catches it until run returns, so that it never finds the default
	// action, which would end the process before it cleans up.
	d.notifier.Stopping()
	grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var forced atomic.Bool
	shutdownDone := make(chan struct{})
	go func() {
		select {
		case s := <-d.sig.Stop:
			d.log.Warn("second signal: closing the remaining connections now", zap.String("signal", s.String()))
			forced.Store(true)
			cancel()
		case <-shutdownDone:
		}
	}()
	if err := d.srv.Shutdown(grace); err != nil {
		d.log.Warn("requests still in flight were cut off", zap.Error(err))
	}
	close(shutdownDone)
	for ; d.running > 0; d.running-- {
		if err := <-d.errc; !errors.Is(err, holder.ErrServerClosed) && failure == nil {
			failure = fmt.Errorf("serve: %w", err)
		}
	}
	held := d.reg.Len()
	d.reg.Close()
	d.removeSocketFile()
	d.log.Info("stopped", zap.Int("entries_closed", held), zap.Bool("forced", forced.Load()))
	if failure == nil && forced.Load() {
		failure = errForced
	}
	return failure
}
