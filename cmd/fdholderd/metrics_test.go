package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// metricsClient returns an HTTP client and the base URL for a metrics
// address as fdholderd logs it.
func metricsClient(addr string) (*http.Client, string) {
	path, isUnix := strings.CutPrefix(addr, "unix:")
	if !isUnix {
		return http.DefaultClient, "http://" + addr
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &http.Client{Transport: tr}, "http://fdholderd"
}

func scrapeMetrics(t testing.TB, addr string) string {
	t.Helper()
	hc, base := metricsClient(addr)
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	hc.CloseIdleConnections()
	return string(body)
}

func isServingMetrics(r record) bool { return r.str("msg") == "serving metrics" }

// TestMetricsAddress serves metrics on TCP and on a Unix socket, and
// checks that a store shows in them, that the Unix socket file goes away
// at exit, and that an upgrade in place (SIGUSR2) serves them again at the
// same path.
func TestMetricsAddress(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, tt := range []struct {
		name string
		addr func(dir string) string
	}{
		{name: "tcp", addr: func(string) string { return "127.0.0.1:0" }},
		{name: "unix", addr: func(dir string) string { return "unix:" + filepath.Join(dir, "m.sock") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := testutil.ShortDir(t)
			path := filepath.Join(dir, "h.sock")
			d := startServing(t, daemonOpts{socket: path, bin: copyBinary(t, dir), args: []string{"--metrics-address", tt.addr(dir)}})
			addr := d.waitFor("serving metrics", isServingMetrics).str("address")
			c := dial(t, path)
			storeGet(t, c, "web")
			c.Close()
			// The server counts a request once its reply is sent: the
			// get's count may come a moment after the client has its reply.
			want := []string{`fdholder_entries{network="tcp"} 1`, `fdholder_requests_total{op="get",result="ok"} 1`, "fdholder_build_info{"}
			var body string
			for deadline := time.Now().Add(waitTimeout); ; time.Sleep(10 * time.Millisecond) {
				body = scrapeMetrics(t, addr)
				if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(body, w) }) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after %v, metrics lack one of %q:\n%s", waitTimeout, want, body)
				}
			}
			if tt.name == "unix" {
				d.signal(syscall.SIGUSR2)
				d.waitFor("upgrade", func(r record) bool { return isRecovered("upgrade")(r) })
				d.waitFor("metrics again", func(r record) bool { return d.count(isServingMetrics) == 2 })
				if body := scrapeMetrics(t, addr); !strings.Contains(body, `fdholder_entries{network="tcp"} 1`) {
					t.Errorf("after the upgrade, metrics lack the entry")
				}
			}
			d.stop()
			if p, ok := strings.CutPrefix(addr, "unix:"); ok {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("after exit: lstat %s: %v, want the socket file removed", p, err)
				}
			}
		})
	}
}

// TestMetricsAddressBusy: an address that cannot be listened on stops the
// start with a clear error.
func TestMetricsAddressBusy(t *testing.T) {
	testutil.CheckLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr := runOnce(t, nil, "--socket", socketPath(t), "--metrics-address", ln.Addr().String())
	if code != 1 || !strings.Contains(stderr, "fdholderd: metrics: listen tcp "+ln.Addr().String()) {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}
