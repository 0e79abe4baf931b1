package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/fdholder/fdholder/internal/fdstore"
	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/metrics"
)

// serveMetrics serves the holder's metrics at --metrics-address, until ctx
// is done or the process execs an upgrade (the listener is close-on-exec;
// the new binary listens again), and returns the observer for the server.
// Without --metrics-address it does nothing and returns nil. An address
// that cannot be listened on stops the start, as the control socket does.
func serveMetrics(ctx context.Context, cfg config, log *zap.Logger, reg *holder.Registry, mirror *fdstore.Mirror) (holder.RequestObserver, error) {
	if cfg.metricsAddress == "" {
		return nil, nil
	}
	ln, err := metrics.Listen(ctx, cfg.metricsAddress)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	opts := metrics.Options{Registry: reg, MaxListeners: cfg.metricsMaxListeners}
	if mirror != nil { // a nil *Mirror in the interface would not be nil
		opts.Mirror = mirror
	}
	m := metrics.New(opts)
	addr := ln.Addr().String()
	if ln.Addr().Network() == "unix" {
		addr = "unix:" + addr
	}
	log.Info("serving metrics", zap.String("address", addr))
	go func() {
		if err := m.Serve(ctx, ln, log); err != nil {
			log.Error("metrics: serving failed; the holder serves on without them", zap.Error(err))
		}
	}()
	return m, nil
}
