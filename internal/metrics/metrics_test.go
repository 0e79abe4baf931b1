package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/fdstore"
	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/metrics"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sdnotify"
	"github.com/fdholder/fdholder/internal/sockfd"
	"github.com/fdholder/fdholder/internal/testutil"
	"github.com/fdholder/fdholder/internal/version"
)

// peerEnv makes the test binary a client of the holder at its value that
// gets "web" and exits: run as another uid, its request goes through the
// access policy, which root's and the holder's own do not.
const peerEnv = "FDHOLDER_METRICS_TEST_PEER"

func TestMain(m *testing.M) {
	if path := os.Getenv(peerEnv); path != "" {
		c, err := fdholder.Dial(context.Background(), path)
		if err == nil {
			_, _, err = c.Get(context.Background(), "web")
			c.Close()
		}
		fmt.Println(err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// rig is a real holder (registry and server on a Unix socket) whose
// metrics are served over HTTP on a loopback port from the kernel.
type rig struct {
	reg  *holder.Registry
	path string // the holder's socket
	url  string // the metrics
	m    *metrics.Metrics
}

type rigOptions struct {
	limits  holder.Limits
	metrics metrics.Options
	regOpts holder.RegistryOptions
}

func start(t testing.TB, o rigOptions) *rig {
	t.Helper()
	o.regOpts.Logger = zaptest.NewLogger(t)
	reg := holder.NewRegistry(o.regOpts)
	t.Cleanup(reg.Close)
	o.metrics.Registry = reg
	m := metrics.New(o.metrics)
	dir := testutil.ShortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "h.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	srv := holder.NewServer(reg, holder.ServerOptions{Logger: zaptest.NewLogger(t), Limits: o.limits, Requests: m})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, holder.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	mln, err := metrics.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx, mln, zaptest.NewLogger(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serving metrics: %v", err)
		}
	})
	return &rig{reg: reg, path: path, url: "http://" + mln.Addr().String() + "/metrics", m: m}
}

func (r *rig) dial(t testing.TB) *fdholder.Client {
	t.Helper()
	c, err := fdholder.Dial(context.Background(), r.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// scrape fetches the exposition as Prometheus does.
func (r *rig) scrape(t testing.TB) []byte {
	t.Helper()
	req, err := http.NewRequest("GET", r.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v\n%s", r.url, resp.StatusCode, err, body)
	}
	return body
}

// families is a parsed scrape.
type families map[string]*dto.MetricFamily

func (r *rig) families(t testing.TB) families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.scrape(t)))
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// get returns the value of the series of name whose labels include
// labels ("k=v" each), and whether there is one. A histogram's value is
// its count.
func (f families) get(name string, labels ...string) (float64, bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
next:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func (f families) want(t testing.TB, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := f.get(name, labels...)
	if !ok {
		t.Errorf("%s%v: no such series", name, labels)
	} else if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// want scrapes until the series of name with labels has the value want,
// for up to 10 s: the server reports a request after sending its reply, so
// a client can scrape before its last request is counted.
func (r *rig) want(t testing.TB, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := r.families(t)
		got, ok := f.get(name, labels...)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			f.want(t, want, name, labels...)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor scrapes until cond holds, for up to 10 s: the facts it waits for
// (a connection closed, a handshake completed) happen on other goroutines
// or in the kernel, a moment after the test caused them.
func (r *rig) waitFor(t testing.TB, what string, cond func(families) bool) families {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := r.families(t)
		if cond(f) {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRequestsAndDurations(t *testing.T) {
	testutil.CheckLeaks(t)
	r := start(t, rigOptions{})
	c := r.dial(t)
	ctx := context.Background()
	if _, err := c.ListenAndStore(ctx, "web", "tcp", "127.0.0.1:0", fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		f, _, err := c.Get(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if _, _, err := c.Get(ctx, "nothing"); !errors.Is(err, fdholder.ErrNotFound) {
		t.Fatalf("get nothing: %v", err)
	}
	if _, err := c.List(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		op, result string
		want       float64
	}{
		{name: "store", op: "store", result: "ok", want: 1},
		{name: "gets", op: "get", result: "ok", want: 3},
		{name: "miss", op: "get", result: "not_found", want: 1},
		{name: "list", op: "list", result: "ok", want: 1},
		{name: "delete", op: "delete", result: "ok", want: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r.want(t, tt.want, "fdholder_requests_total", "op="+tt.op, "result="+tt.result)
		})
	}
	r.want(t, 4, "fdholder_request_duration_seconds", "op=get")
	f := r.families(t)
	f.want(t, 0, "fdholder_request_duration_seconds", "op=take") // made in advance
	if _, ok := f.get("fdholder_requests_total", "op=take"); ok {
		t.Error("a series for take, which never ran")
	}
	f.want(t, 0, "fdholder_refusals_total", "reason=policy")
	f.want(t, 0, "fdholder_refusals_total", "reason=limit")
}

func TestRefusals(t *testing.T) {
	testutil.CheckLeaks(t)
	t.Run("limit", func(t *testing.T) {
		r := start(t, rigOptions{limits: holder.Limits{MaxEntries: 1, MaxConns: 1}})
		c := r.dial(t)
		ctx := context.Background()
		if _, err := c.ListenAndStore(ctx, "a", "tcp", "127.0.0.1:0", fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListenAndStore(ctx, "b", "tcp", "127.0.0.1:0", fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrLimit) {
			t.Fatalf("second store: %v, want the entry limit", err)
		}
		// A second connection is beyond MaxConns: its one request is
		// answered with the limit.
		c2 := r.dial(t)
		if _, _, err := c2.Get(ctx, "a"); !errors.Is(err, fdholder.ErrLimit) {
			t.Fatalf("get on a second connection: %v, want the connection limit", err)
		}
		r.want(t, 1, "fdholder_requests_total", "op=store", "result=limit")
		r.want(t, 1, "fdholder_requests_total", "op=get", "result=limit")
		r.want(t, 2, "fdholder_refusals_total", "reason=limit")
		r.want(t, 0, "fdholder_refusals_total", "reason=policy")
	})
	t.Run("policy", func(t *testing.T) {
		testutil.NeedPeer(t, os.Getuid() == 0, "root, to run a client as another uid")
		r := start(t, rigOptions{})
		// The test binary, where uid 65534 may run it.
		self, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(filepath.Dir(r.path), "peer")
		if err := os.WriteFile(bin, self, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), peerEnv+"="+r.path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "permission denied") {
			t.Fatalf("peer as uid 65534: %v: %s", err, out)
		}
		r.want(t, 1, "fdholder_requests_total", "op=get", "result=permission")
		r.want(t, 1, "fdholder_refusals_total", "reason=policy")
		r.want(t, 0, "fdholder_refusals_total", "reason=limit")
	})
}

func TestOpenConnections(t *testing.T) {
	testutil.CheckLeaks(t)
	r := start(t, rigOptions{})
	r.families(t).want(t, 0, "fdholder_open_connections")
	c1, c2 := r.dial(t), r.dial(t)
	ctx := context.Background()
	// A round trip on each proves both connections were accepted, and
	// the server counts a connection before it serves it.
	for _, c := range []*fdholder.Client{c1, c2} {
		if _, err := c.List(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r.families(t).want(t, 2, "fdholder_open_connections")
	c1.Close()
	r.waitFor(t, "one connection open", func(f families) bool {
		v, _ := f.get("fdholder_open_connections")
		return v == 1
	})
	c2.Close()
	r.waitFor(t, "no connection open", func(f families) bool {
		v, _ := f.get("fdholder_open_connections")
		return v == 0
	})
}

// listenTCP returns a TCP listener on a loopback port from the kernel with
// the given backlog, as a descriptor the registry may own.
func listenTCP(t testing.TB, backlog int) (*sockfd.FD, int) {
	t.Helper()
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd := sockfd.New(s)
	if err := unix.Bind(s, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		fd.Close()
		t.Fatal(err)
	}
	if err := unix.Listen(s, backlog); err != nil {
		fd.Close()
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(s)
	if err != nil {
		fd.Close()
		t.Fatal(err)
	}
	return fd, sa.(*unix.SockaddrInet4).Port
}

func hold(t testing.TB, reg *holder.Registry, name string, fd *sockfd.FD) {
	t.Helper()
	info, err := sockfd.Inspect(fd)
	if err != nil {
		fd.Close()
		t.Fatal(err)
	}
	if _, err := reg.Store(name, fd, holder.StoreOptions{Info: info}); err != nil {
		t.Fatal(err)
	}
}

func unixListener(t testing.TB, dir, name string) *sockfd.FD {
	t.Helper()
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd := sockfd.New(s)
	if err := unix.Bind(s, &unix.SockaddrUnix{Name: filepath.Join(dir, name)}); err != nil {
		fd.Close()
		t.Fatal(err)
	}
	if err := unix.Listen(s, 8); err != nil {
		fd.Close()
		t.Fatal(err)
	}
	return fd
}

func TestEntriesAndQueues(t *testing.T) {
	testutil.CheckLeaks(t)
	r := start(t, rigOptions{})
	dir := testutil.ShortDir(t)
	web, port := listenTCP(t, 16)
	hold(t, r.reg, "web", web)
	hold(t, r.reg, "admin", unixListener(t, dir, "a"))
	f := r.families(t)
	f.want(t, 1, "fdholder_entries", "network=tcp")
	f.want(t, 1, "fdholder_entries", "network=unix")
	f.want(t, 0, "fdholder_entries", "network=udp")
	f.want(t, 0, "fdholder_listener_queued_connections", "name=web")
	f.want(t, 16, "fdholder_listener_backlog", "name=web")
	if _, ok := f.get("fdholder_listener_queued_connections", "name=admin"); ok {
		t.Error("a queue series for a Unix listener")
	}
	f.want(t, 0, "fdholder_listener_series_omitted")

	// Connections nobody accepts wait in the queue: the kernel completes
	// their handshakes (tcp(7)).
	const n = 5
	for range n {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	r.waitFor(t, fmt.Sprintf("%d queued connections", n), func(f families) bool {
		v, _ := f.get("fdholder_listener_queued_connections", "name=web")
		return v == n
	})
	// Every figure equals what the kernel reports to fdclient list.
	h, err := r.reg.Get("web")
	if err != nil {
		t.Fatal(err)
	}
	q, b, err := sockfd.TCPQueue(h.FD())
	h.Release()
	if err != nil || q != n || b != 16 {
		t.Fatalf("TCPQueue = %d, %d, %v; want %d, 16", q, b, err, n)
	}
}

// TestListenerCap holds more TCP listeners, with long names, than one list
// page carries, among Unix sockets, and checks that every entry is counted
// once and exactly the first MaxListeners TCP listeners have series.
func TestListenerCap(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, tt := range []struct {
		name    string
		max     int
		tcp     int
		series  int
		omitted int
	}{
		{name: "under", max: 1000, tcp: 400, series: 400},
		{name: "over", max: 300, tcp: 400, series: 300, omitted: 100},
		{name: "none", max: -1, tcp: 10, series: 0, omitted: 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, rigOptions{metrics: metrics.Options{MaxListeners: tt.max}})
			dir := testutil.ShortDir(t)
			pad := strings.Repeat("x", 240)
			for i := range tt.tcp {
				fd, _ := listenTCP(t, 4)
				hold(t, r.reg, fmt.Sprintf("l%04d-%s", i, pad), fd)
				if i%3 == 0 {
					hold(t, r.reg, fmt.Sprintf("l%04d-u-%s", i, pad), unixListener(t, dir, fmt.Sprint(i)))
				}
			}
			f := r.families(t)
			f.want(t, float64(tt.tcp), "fdholder_entries", "network=tcp")
			f.want(t, float64((tt.tcp+2)/3), "fdholder_entries", "network=unix")
			f.want(t, float64(tt.omitted), "fdholder_listener_series_omitted")
			got := 0
			if fam := f["fdholder_listener_queued_connections"]; fam != nil {
				got = len(fam.Metric)
				for i, m := range fam.Metric {
					if want := fmt.Sprintf("l%04d-%s", i, pad); m.Label[0].GetValue() != want {
						t.Fatalf("series %d is %q, want %q", i, m.Label[0].GetValue(), want)
					}
				}
			}
			if got != tt.series {
				t.Errorf("%d listeners with series, want %d", got, tt.series)
			}
		})
	}
}

// notifySink returns a real datagram socket standing in for systemd's
// notification socket, and an sdnotify.Socket that sends to it: the messages
// arrive there until it is closed. Both are closed at the end of the test.
func notifySink(t testing.TB) (*net.UnixConn, *sdnotify.Socket) {
	t.Helper()
	path := filepath.Join(testutil.ShortDir(t), "notify")
	sink, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	n, err := sdnotify.NewSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return sink, n
}

func TestFDStoreMirror(t *testing.T) {
	testutil.CheckLeaks(t)
	sink, n := notifySink(t)
	mirror := fdstore.NewMirror(n, zaptest.NewLogger(t), 1)
	r := start(t, rigOptions{regOpts: holder.RegistryOptions{Observer: mirror}, metrics: metrics.Options{Mirror: mirror}})
	drain := func() { // close the descriptors the messages carried
		buf, oob := make([]byte, 4096), make([]byte, 4096)
		for {
			sink.SetReadDeadline(time.Now())
			_, oobn, _, _, err := sink.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			testutil.CloseRights(oob[:oobn])
		}
	}
	fd, _ := listenTCP(t, 4)
	hold(t, r.reg, "web", fd)
	if err := r.reg.Delete("web", nil); err != nil {
		t.Fatal(err)
	}
	drain()
	f := r.families(t)
	f.want(t, 1, "fdholder_fdstore_operations_total", "op=store")
	f.want(t, 1, "fdholder_fdstore_operations_total", "op=remove")
	f.want(t, 0, "fdholder_fdstore_failures_total", "op=store")
	f.want(t, 0, "fdholder_fdstore_failures_total", "op=remove")

	// With nobody at the notification socket, sends fail (ECONNREFUSED):
	// the store is refused, as its copy could not be made.
	sink.Close()
	fd, _ = listenTCP(t, 4)
	info, err := sockfd.Inspect(fd)
	if err != nil {
		fd.Close()
		t.Fatal(err)
	}
	if _, err := r.reg.Store("web", fd, holder.StoreOptions{Info: info}); err == nil {
		t.Fatal("a store whose copy failed was held")
	}
	f = r.families(t)
	f.want(t, 2, "fdholder_fdstore_operations_total", "op=store")
	f.want(t, 1, "fdholder_fdstore_failures_total", "op=store")
	f.want(t, 0, "fdholder_entries", "network=tcp")
}

func TestProcessAndBuild(t *testing.T) {
	testutil.CheckLeaks(t)
	r := start(t, rigOptions{metrics: metrics.Options{Version: "v9.9.9-test"}})
	f := r.families(t)
	f.want(t, 1, "fdholder_build_info", "version=v9.9.9-test", "goversion="+runtime.Version())
	// By default, the version --version prints.
	start(t, rigOptions{}).families(t).want(t, 1, "fdholder_build_info", "version="+version.Version)
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	f.want(t, float64(rl.Cur), "process_max_fds")
	open, ok := f.get("process_open_fds")
	if have := len(testutil.OpenFDs(t)); !ok || open < 5 || open > float64(have+10) {
		t.Errorf("process_open_fds = %v (present: %v), this process has about %d", open, ok, have)
	}
}

// TestPromtoolCheckMetrics runs Prometheus's own linter over a scrape of a
// holder that has done some of everything.
func TestPromtoolCheckMetrics(t *testing.T) {
	testutil.CheckLeaks(t)
	promtool, err := exec.LookPath("promtool")
	testutil.NeedPeer(t, err == nil, "promtool (apt-get install prometheus)")
	r := start(t, rigOptions{limits: holder.Limits{MaxEntries: 1}})
	c := r.dial(t)
	ctx := context.Background()
	if _, err := c.ListenAndStore(ctx, "web", "tcp", "127.0.0.1:0", fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListenAndStore(ctx, "web2", "tcp", "127.0.0.1:0", fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrLimit) {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctx, "nothing"); !errors.Is(err, fdholder.ErrNotFound) {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(r.scrape(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestRequestAllocatesNothing: the observer runs on every request of the
// get path, which allocates nothing.
func TestRequestAllocatesNothing(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.Request(proto.OpGet, proto.CodeOK, time.Microsecond) // makes the series
	if n := testing.AllocsPerRun(1000, func() {
		m.Request(proto.OpGet, proto.CodeOK, time.Microsecond)
		m.ConnOpened()
		m.ConnClosed()
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// TestDocumented: every fdholder_ metric served is listed in
// docs/operations.md, and every one listed there is served (with the
// fd-store mirror on, and a TCP listener held).
func TestDocumented(t *testing.T) {
	testutil.CheckLeaks(t)
	listed := map[string]bool{}
	for _, name := range testutil.DocumentedMetrics(t) {
		if strings.HasPrefix(name, "fdholder_") {
			listed[name] = true
		}
	}
	_, n := notifySink(t)
	r := start(t, rigOptions{metrics: metrics.Options{Mirror: fdstore.NewMirror(n, zaptest.NewLogger(t), 1)}})
	fd, _ := listenTCP(t, 4)
	hold(t, r.reg, "web", fd)
	r.m.Request(proto.OpGet, proto.CodeOK, time.Microsecond)
	served := map[string]bool{}
	for name := range r.families(t) {
		if strings.HasPrefix(name, "fdholder_") {
			served[name] = true
			if !listed[name] {
				t.Errorf("%s is served but not listed in docs/operations.md", name)
			}
		}
	}
	for name := range listed {
		if !served[name] {
			t.Errorf("docs/operations.md lists %s, which is not served", name)
		}
	}
}
