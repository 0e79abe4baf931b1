package main

import (
	"fmt"
	"os"

	"go.uber.org/zap"

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

// reloadOnHUP reloads the policy on each SIGHUP until the returned stop is
// called, on a goroutine of its own, so that a reload is served during an
// upgrade or a shutdown too.
func (d *holderd) reloadOnHUP() (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-d.sig.Reload:
			}
			d.reload()
		}
	}()
	return func() { close(done) }
}

// reload reloads --policy and hands it to the serving server; a server
// started later (after a failed upgrade) starts with it. A policy that
// fails to load leaves the one in force: the holder never runs with a
// half-read file.
func (d *holderd) reload() {
	if d.cfg.policy == "" {
		d.log.Info("SIGHUP: no --policy to reload")
		return
	}
	p, err := policy.Load(d.cfg.policy, uint32(os.Getuid()))
	if err != nil {
		d.log.Error("policy reload failed; keeping the policy in force", zap.String("policy", d.cfg.policy), zap.Error(err))
		return
	}
	d.mu.Lock()
	d.access = p
	if d.srv != nil { // nil until start serves: that server starts with p
		d.srv.SetAccess(p)
	}
	d.mu.Unlock()
	d.log.Info("policy reloaded", zap.String("policy", d.cfg.policy), zap.Int("rules", len(p.Rules())))
}

// emptyPolicy is the warning for a policy file without rules, which
// grants nothing beyond the default.
func emptyPolicy(file string, uid int) string {
	return fmt.Sprintf("policy %s has no rules: only root and uid %d (fdholderd's) may use the holder", file, uid)
}
