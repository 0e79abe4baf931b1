package holdertest

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/testutil"
)

// Holder is a running in-process holder.
type Holder struct {
	Path     string // the control socket
	Registry *holder.Registry
	Server   *holder.Server
}

// Start serves a new registry on a socket in a short directory. At the end
// of the test the server is shut down and the registry closed, so that every
// held descriptor is closed before a leak check runs.
func Start(t testing.TB) *Holder {
	t.Helper()
	reg := holder.NewRegistry(holder.RegistryOptions{Logger: zaptest.NewLogger(t)})
	t.Cleanup(reg.Close)
	return StartOn(t, filepath.Join(testutil.ShortDir(t), "h.sock"), reg)
}

// StartObserved is Start with every log line of the server also kept in
// logs, so that a test can wait for the audit line of a request.
func StartObserved(t testing.TB) (h *Holder, logs *observer.ObservedLogs) {
	t.Helper()
	reg := holder.NewRegistry(holder.RegistryOptions{Logger: zaptest.NewLogger(t)})
	t.Cleanup(reg.Close)
	core, logs := observer.New(zapcore.DebugLevel)
	log := zaptest.NewLogger(t, zaptest.WrapOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, core)
	})))
	return startOn(t, filepath.Join(testutil.ShortDir(t), "h.sock"), reg, log), logs
}

// StartOn serves reg on a new socket at path, shut down at the end of the
// test. The caller closes reg.
func StartOn(t testing.TB, path string, reg *holder.Registry) *Holder {
	t.Helper()
	return startOn(t, path, reg, zaptest.NewLogger(t))
}

func startOn(t testing.TB, path string, reg *holder.Registry, log *zap.Logger) *Holder {
	t.Helper()
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	srv := holder.NewServer(reg, holder.ServerOptions{Logger: log})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, holder.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return &Holder{Path: path, Registry: reg, Server: srv}
}
