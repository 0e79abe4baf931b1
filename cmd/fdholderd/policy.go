package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/policy"
)

// loadAccess loads --policy, if given. Without it the holder's default
// applies (root and this uid only). The error names the file and line.
func loadAccess(cfg config, log *zap.Logger) (holder.Access, error) {
	if cfg.policy == "" {
		log.Info("no policy: only root and the holder's own uid may use the holder", zap.Int("holder_uid", os.Getuid()))
		return nil, nil
	}
	p, err := policy.Load(cfg.policy, uint32(os.Getuid()))
	if err != nil {
		return nil, err
	}
	log.Info("policy loaded", zap.String("policy", cfg.policy), zap.Int("rules", len(p.Rules())))
	if len(p.Rules()) == 0 {
		log.Warn(emptyPolicy(cfg.policy, os.Getuid()))
	}
	return p, nil
}

// reloadOnHUP reloads the policy on each SIGHUP from hup until stop is
// called, and hands it to setAccess (the serving server's SetAccess). A
// policy that fails to load leaves the one in force: the holder never runs
// with a half-read file.
func reloadOnHUP(cfg config, log *zap.Logger, setAccess func(holder.Access), hup <-chan os.Signal) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			if cfg.policy == "" {
				log.Info("SIGHUP: no --policy to reload")
				continue
			}
			p, err := policy.Load(cfg.policy, uint32(os.Getuid()))
			if err != nil {
				log.Error("policy reload failed; keeping the policy in force", zap.String("policy", cfg.policy), zap.Error(err))
				continue
			}
			setAccess(p)
			log.Info("policy reloaded", zap.String("policy", cfg.policy), zap.Int("rules", len(p.Rules())))
		}
	}()
	return func() { close(done) }
}

// socketOptions turns --socket-mode and --socket-group into ctlsock's.
func socketOptions(cfg config) (ctlsock.Options, error) {
	opts := ctlsock.Options{Mode: cfg.socketMode, GID: -1}
	if cfg.socketGroup == "" {
		return opts, nil
	}
	if gid, err := strconv.ParseUint(cfg.socketGroup, 10, 31); err == nil {
		opts.GID = int(gid)
		return opts, nil
	}
	g, err := user.LookupGroup(cfg.socketGroup)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return opts, fmt.Errorf("--socket-group %s: no such group (getent group %s finds none)", cfg.socketGroup, cfg.socketGroup)
		}
		return opts, fmt.Errorf("--socket-group %s: %w", cfg.socketGroup, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return opts, fmt.Errorf("--socket-group %s: gid %q: %w", cfg.socketGroup, g.Gid, err)
	}
	opts.GID = gid
	return opts, nil
}

// raiseNoFile raises the RLIMIT_NOFILE soft limit to the hard limit
// (getrlimit(2)): every held socket is a descriptor, and the default soft
// limit (1024) is far too low for a holder. The Go runtime already does so
// at start since Go 1.19; doing it here makes it explicit and logged. It
// warns when the limit cannot fit the connections allowed plus the reserve.
func raiseNoFile(log *zap.Logger, limits holder.Limits) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read RLIMIT_NOFILE", zap.Error(os.NewSyscallError("getrlimit", err)))
		return
	}
	before := rl.Cur
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			log.Warn("cannot raise RLIMIT_NOFILE", zap.Uint64("soft", before), zap.Uint64("hard", rl.Max),
				zap.Error(os.NewSyscallError("setrlimit", err)))
			rl.Cur = before
		}
	}
	log.Info("descriptor limit", zap.Uint64("soft_before", before), zap.Uint64("soft", rl.Cur), zap.Uint64("hard", rl.Max))
	l := limits
	if l.MaxConns > 0 && l.FDReserve > 0 && uint64(l.MaxConns+l.FDReserve) > rl.Cur {
		log.Warn("RLIMIT_NOFILE is lower than --max-conns plus --fd-reserve: stores will be refused before connections are",
			zap.Uint64("soft", rl.Cur), zap.Int("max_conns", l.MaxConns), zap.Int("fd_reserve", l.FDReserve))
	}
}
