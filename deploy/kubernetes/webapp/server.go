package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

// defaultDrain bounds the wait for open connections after SIGTERM. It is
// below Kubernetes' default terminationGracePeriodSeconds (30 s), so the
// app exits by itself before the kubelet sends SIGKILL.
const defaultDrain = 10 * time.Second

// run is the program: parse args, take the listeners, serve until ctx is
// done, drain. It returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("webapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	drain := fs.Duration("drain", defaultDrain, "how long to wait for open connections after SIGTERM")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Listeners reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES (the
	// variables fdclient exec sets) and unsets them, so that a program
	// this one started would not take them for its own.
	lns, err := activation.Listeners()
	if err != nil {
		fmt.Fprintf(stderr, "webapp: %v\n", err)
		return 1
	}
	var listeners []net.Listener
	for _, ln := range lns {
		if ln != nil { // a passed descriptor that is not a stream listener
			listeners = append(listeners, ln)
		}
	}
	if len(listeners) == 0 {
		fmt.Fprintf(stderr, "webapp: no listener passed (LISTEN_FDS): start it through fdclient exec NAME=tcp:ADDRESS -- webapp\n")
		return 1
	}
	s := newServer()
	errc := make(chan error, len(listeners))
	for _, ln := range listeners {
		go func() { errc <- s.srv.Serve(ln) }()
		fmt.Fprintf(stderr, "webapp: ready: pid %d serving http on %s\n", os.Getpid(), ln.Addr())
	}
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "webapp: serve: %v\n", err)
		s.srv.Close()
		return 1
	case <-ctx.Done():
	}
	n := s.drain(listeners, *drain, stderr)
	fmt.Fprintf(stderr, "webapp: drained: %d connections cut at the %v limit\n", n, *drain)
	return 0
}

// server is the HTTP server and the count of its open connections.
type server struct {
	srv      *http.Server
	draining atomic.Bool

	mu    sync.Mutex
	open  int           // connections not yet closed
	empty chan struct{} // closed when open drops to 0 while draining
}

func newServer() *server {
	s := &server{empty: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from pid %d\n", os.Getpid())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	s.srv = &http.Server{
		Handler:           s.closing(mux),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         s.track,
	}
	return s
}

// closing makes every response after SIGTERM say "Connection: close", on
// which net/http closes the connection once the response is written. A
// client sees the close coming and reconnects; closing an idle keep-alive
// connection instead (what http.Server.Shutdown does) races with the
// client's next request, which then fails.
func (s *server) closing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// track counts open connections (net/http calls it on every change of a
// connection's state).
func (s *server) track(_ net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.open++
	case http.StateClosed, http.StateHijacked:
		s.open--
		s.signalEmpty()
	}
}

// signalEmpty closes s.empty once no connection is open while draining.
// s.mu must be held.
func (s *server) signalEmpty() {
	if s.open > 0 || !s.draining.Load() {
		return
	}
	select {
	case <-s.empty:
	default:
		close(s.empty)
	}
}

// drain stops accepting, lets every open connection end after its next
// response, and returns how many were still open after limit (then cut).
// Closing a listener closes this process's descriptor only: the socket
// lives on in the holder and queues new connections for the successor.
func (s *server) drain(listeners []net.Listener, limit time.Duration, stderr io.Writer) int {
	s.draining.Store(true)
	for _, ln := range listeners {
		ln.Close()
	}
	s.mu.Lock()
	fmt.Fprintf(stderr, "webapp: draining: %d connections open\n", s.open)
	s.signalEmpty()
	s.mu.Unlock()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-s.empty:
		return 0
	case <-t.C:
	}
	s.mu.Lock()
	n := s.open
	s.mu.Unlock()
	s.srv.Close()
	return n
}
