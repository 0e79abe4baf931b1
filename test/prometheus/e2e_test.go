package prometheus

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/e2etest"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// The binaries under test, built once by TestMain.
var fdholderdBin, fdclientBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fdholder-prom-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if fdholderdBin, err = testutil.BuildBinary(dir, "fdholderd"); err == nil {
		fdclientBin, err = testutil.BuildBinary(dir, "fdclient")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// waitLimit bounds every wait on a fact: generous, so that a busy machine
// does not fail the test; it exists to turn a hang into a message.
const waitLimit = 60 * time.Second

// proc is a started process whose output is kept for failure messages.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startProc starts name with args; it is killed (by its pid) and waited
// for at the end of the test unless stopped before.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.Env = cleanEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends the process with SIGTERM and waits for it.
func (p *proc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop on SIGTERM within %v", p.cmd.Path, waitLimit)
	}
}

// cleanEnv is the environment without what would make fdholderd think
// systemd started it, nor a $FDHOLDER_SOCKET that would move its socket.
func cleanEnv() []string { return e2etest.ChildEnv("FDHOLDER_SOCKET") }

// until polls cond until it returns true, for at most waitLimit.
func until(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last seen: %s", waitLimit, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePort returns a loopback port the kernel just handed out, for a
// program that must be told its port.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// promQuery runs an instant query through Prometheus's HTTP API and
// returns the value of each series, keyed by its labels' text.
func promQuery(t testing.TB, base, q string) (map[string]float64, error) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, r.Error)
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			return nil, err
		}
		out[fmt.Sprint(s.Metric)] = v
	}
	return out, nil
}

// queryValue returns the value of a query that yields one series.
func queryValue(t testing.TB, base, q string) (float64, bool, string) {
	res, err := promQuery(t, base, q)
	if err != nil {
		return 0, false, err.Error()
	}
	if len(res) != 1 {
		return 0, false, fmt.Sprintf("%d series: %v", len(res), res)
	}
	for _, v := range res {
		return v, true, fmt.Sprint(v)
	}
	return 0, false, ""
}

// holdListener binds a TCP listener on a loopback port from the kernel with
// the given backlog and stores it in the holder as name with fdclient
// store, as a service would; it returns the listener's address.
func holdListener(t testing.TB, socket, name string, backlog int) string {
	t.Helper()
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(s), "listener")
	defer f.Close()
	if err := unix.Bind(s, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(s, backlog); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(s)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fdclientBin, "--socket", socket, "store", "--fd", "3", name)
	cmd.ExtraFiles = []*os.File{f}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fdclient store: %v\n%s", err, out)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}

// service is a server of the held listener: it gets the socket from the
// holder, as a restarted service does, and accepts and closes connections
// until stopped.
type service struct {
	ln       net.Listener
	done     chan struct{}
	accepted int
}

func startService(t testing.TB, socket, name string) *service {
	t.Helper()
	ln := holdertest.Listener(t, socket, name)
	s := &service{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted++
			c.Close()
		}
	}()
	return s
}

// stop closes the service's copy of the socket: the holder's copy keeps
// the socket, and its queue, alive.
func (s *service) stop() int {
	s.ln.Close()
	<-s.done
	return s.accepted
}

// TestPrometheusSeesQueueFillAndDrain runs a real Prometheus scraping a
// real fdholderd every second, with the shipped alert rules. A held
// listener's service stops, connections pile up in its queue past 80% of
// the backlog, and the service restarts: Prometheus's HTTP API shows the
// queue rise to the number of waiting connections, the queue alert become
// active, and the queue return to 0. Then the holder stops, and the holder
// down alert becomes active.
func TestPrometheusSeesQueueFillAndDrain(t *testing.T) {
	testutil.CheckLeaks(t)
	promBin, err := exec.LookPath("prometheus")
	testutil.NeedPeer(t, err == nil, "prometheus (apt-get install prometheus)")
	dir := testutil.ShortDir(t)
	socket := filepath.Join(dir, "h.sock")

	holder := startProc(t, fdholderdBin, "--socket", socket, "--log-format", "json",
		"--metrics-address", "127.0.0.1:0")
	var metricsAddr string
	until(t, "fdholderd to serve metrics", func() (bool, string) {
		sc := bufio.NewScanner(strings.NewReader(holder.output()))
		for sc.Scan() {
			var r struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
			}
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Msg == "serving metrics" {
				metricsAddr = r.Address
				return true, ""
			}
		}
		return false, holder.output()
	})

	const backlog, waiting = 10, 9 // 90% of the backlog: above the alert's 80%
	addr := holdListener(t, socket, "web", backlog)

	promPort := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: fdholder
    static_configs:
      - targets: [%q]
`, filepath.Join(deployDir(t), "alerts.yml"), metricsAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := startProc(t, promBin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort), "--log.level=warn")
	until(t, "Prometheus to scrape fdholderd", func() (bool, string) {
		v, ok, state := queryValue(t, base, `up{job="fdholder"}`)
		return ok && v == 1, state + "\n" + prom.output()
	})
	queued := `fdholder_listener_queued_connections{job="fdholder",name="web"}`

	// The service serves: nothing waits.
	svc := startService(t, socket, "web")
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	until(t, "the queue at 0 while served", func() (bool, string) {
		v, ok, state := queryValue(t, base, queued)
		return ok && v == 0, state
	})

	// The service stops; clients keep connecting and wait in the queue.
	svc.stop()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range waiting {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	until(t, fmt.Sprintf("Prometheus to see %d queued connections", waiting), func() (bool, string) {
		v, ok, state := queryValue(t, base, queued)
		return ok && v == waiting, state
	})
	until(t, "the queue alert to become active", func() (bool, string) {
		res, err := promQuery(t, base, `ALERTS{alertname="FdholderListenQueueFilling",name="web"}`)
		return err == nil && len(res) == 1, fmt.Sprint(res, err)
	})

	// The service restarts on the same socket and drains the queue.
	svc = startService(t, socket, "web")
	until(t, "Prometheus to see the queue back at 0", func() (bool, string) {
		v, ok, state := queryValue(t, base, queued)
		return ok && v == 0, state
	})
	if n := svc.stop(); n < waiting {
		t.Errorf("the restarted service accepted %d connections, want the %d that waited", n, waiting)
	}
	peak, ok, state := queryValue(t, base, `max_over_time(`+queued+`[10m])`)
	if !ok || peak != waiting {
		t.Errorf("peak of the queue over the test = %s, want %d", state, waiting)
	}

	// The holder goes away: the scrape fails and the down alert is active.
	holder.stop(t)
	until(t, "the holder down alert to become active", func() (bool, string) {
		res, err := promQuery(t, base, `ALERTS{alertname="FdholderDown"}`)
		return err == nil && len(res) == 1, fmt.Sprint(res, err)
	})
	prom.stop(t)
	if t.Failed() {
		t.Logf("prometheus output:\n%s", prom.output())
	}
}
