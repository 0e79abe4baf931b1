package holder_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// threads returns this process's thread count (/proc/self/status).
func threads(t testing.TB) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

// serve serves a new registry with opts (and hot waits of h, unless nil),
// and returns the socket's path and the server; the server is closed at
// the end of the test, before the registry.
func serve(t testing.TB, opts holder.ServerOptions, h *proto.HotWait) (string, *holder.Server) {
	t.Helper()
	reg := holder.NewRegistry(holder.RegistryOptions{Logger: zaptest.NewLogger(t)})
	t.Cleanup(reg.Close)
	path := filepath.Join(testutil.ShortDir(t), "h.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = zaptest.NewLogger(t)
	srv := holder.NewServer(reg, opts)
	if h != nil {
		holder.SetHotWait(srv, h)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, holder.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return path, srv
}

// TestHotWaitBound: connections that each send one request and then stay
// quiet would each keep a thread blocked in ppoll(2) for the whole window
// (an hour here); at most the bound do, the others wait in the netpoller
// with no thread of their own. Close wakes those that wait hot at once.
func TestHotWaitBound(t *testing.T) {
	testutil.CheckLeaks(t)
	const limit, conns = 2, 64
	h := proto.NewHotWait(time.Hour, limit)
	path, srv := serve(t, holder.ServerOptions{}, h)
	list := holdertest.Encode(t, proto.Request{Op: proto.OpList})
	before := threads(t)
	var cs []*holdertest.RawConn
	for i := range conns {
		c := holdertest.DialRaw(t, path, 5*time.Second)
		if rep, _ := c.RoundTrip(list); rep.Code != proto.CodeOK {
			t.Fatal(rep.Err())
		}
		cs = append(cs, c)
		if i == 0 {
			// Nothing else is served: the first connection's goroutine
			// goes on to wait hot for its next request.
			for h.Peak() < 1 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	if p := h.Peak(); p > limit {
		t.Errorf("%d connections waited hot at once, the bound is %d", p, limit)
	}
	grown := threads(t) - before
	t.Logf("%d threads started for %d quiet connections (hot-wait bound %d)", grown, conns, limit)
	if grown >= conns/2 {
		t.Errorf("%d threads started for %d quiet connections: they wait hot beyond the bound of %d", grown, conns, limit)
	}
	// Each connection is still served, hot or not.
	for _, c := range cs {
		if rep, _ := c.RoundTrip(list); rep.Code != proto.CodeOK {
			t.Fatal(rep.Err())
		}
	}
	// Close does not wait for the window: the connections end now (the
	// test would hang for the window otherwise).
	srv.Close()
	for _, c := range cs {
		if n, err := unix.Read(c.FD, make([]byte, 8)); n != 0 || err != nil {
			t.Fatalf("read after Close = %d, %v; want the end of the stream", n, err)
		}
	}
}
