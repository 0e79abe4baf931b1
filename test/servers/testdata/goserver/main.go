// Command goserver is the Go net/http server of docs/servers.md's recipe:
// it serves the socket passed under the name "web" (go-systemd's
// activation.ListenersWithNames reads LISTEN_FDS and LISTEN_FDNAMES), or,
// given -addr, binds the port itself (the baseline). SIGTERM stops it
// gracefully: it stops accepting and exits once every connection it
// accepted has had its reply.
//
// It lives under testdata so that "go test ./..." does not build it; the
// tests build it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

func main() {
	addr := flag.String("addr", "", "bind this address instead of using the socket named web")
	flag.Parse()
	ln, err := listener(*addr)
	if err != nil {
		log.Fatal(err)
	}
	// conns counts the connections Serve accepted and not yet closed.
	var conns sync.WaitGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
			fmt.Fprint(w, "ok\n")
		}),
		// Bounds the wait for a client that connects and sends nothing.
		ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				conns.Done()
			}
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// Not srv.Shutdown: a connection whose request is read after
		// Shutdown began is closed unanswered (net/http's conn.serve
		// returns when the server is shutting down), which under load
		// was dozens of read errors a restart. Instead: replies from now
		// on say "Connection: close" (idle keep-alive connections are
		// closed now), and the listener closes, which ends Serve.
		srv.SetKeepAlivesEnabled(false)
		ln.Close()
	}()
	err = srv.Serve(ln)
	if ctx.Err() == nil || !errors.Is(err, net.ErrClosed) {
		log.Fatal(err)
	}
	// Serve registered (StateNew) every connection it accepted before it
	// returned: wait until each has had its reply and closed.
	conns.Wait()
}

// listener returns the socket passed as "web", or one bound to addr.
func listener(addr string) (net.Listener, error) {
	if addr != "" {
		return net.Listen("tcp", addr)
	}
	named, err := activation.ListenersWithNames()
	if err != nil {
		return nil, err
	}
	if lns := named["web"]; len(lns) > 0 {
		return lns[0], nil
	}
	return nil, errors.New(`no socket named "web" (LISTEN_FDNAMES): start me with fdclient exec web=... -- goserver`)
}
