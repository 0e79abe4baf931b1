package metrics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/fdholder/fdholder/internal/ctlsock"
)

// Listen listens on addr for Serve: a TCP address (host:port, such as
// 127.0.0.1:9727; port 0 picks one), or "unix:PATH" for a Unix stream
// socket. A socket file left at PATH by a process that is gone is
// replaced, and anything else there refused, as ctlsock.Stale decides for
// the control socket.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	path, isUnix := strings.CutPrefix(addr, "unix:")
	if !isUnix {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("metrics address %q: want HOST:PORT or unix:PATH", addr)
		}
		return lc.Listen(ctx, "tcp", addr)
	}
	if path == "" {
		return nil, fmt.Errorf("metrics address %q: empty path", addr)
	}
	ln, err := lc.Listen(ctx, "unix", path)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, err
	}
	stale, serr := ctlsock.Stale(ctx, "unix", path)
	if serr != nil {
		return nil, fmt.Errorf("metrics address %q: %w", addr, serr)
	}
	if stale {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return lc.Listen(ctx, "unix", path)
}

// Handler serves the metrics at /metrics, and a pointer to them at /.
func (m *Metrics) Handler(log *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: zapPrinter{log},
		// A scrape reads every entry under the registry's read lock:
		// bound how many run at once.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "fdholderd: metrics at /metrics")
	})
	return mux
}

// Serve serves the metrics on ln until ctx is done, then closes ln and
// returns nil; it returns an error if serving fails before that.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener, log *zap.Logger) error {
	srv := &http.Server{
		Handler:           m.Handler(log),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// zapPrinter is promhttp's error log.
type zapPrinter struct{ log *zap.Logger }

func (p zapPrinter) Println(v ...any) {
	if p.log != nil {
		p.log.Warn("metrics: "+strings.TrimSpace(fmt.Sprintln(v...)), zap.String("op", "metrics"))
	}
}
