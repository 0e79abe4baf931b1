package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// The binaries under test, built once by TestMain. buildErr is set instead
// when they could not be built; the tests that need them fail with it, the
// others (the baselines without a holder, the parser) still run.
var (
	fdholderdBin string
	fdclientBin  string
	buildErr     error
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests builds the binaries into a temporary directory that it removes
// after the tests, which os.Exit in TestMain would skip.
func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fdholder-e2e-bin")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: temporary directory for binaries: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	fdholderdBin, err = testutil.BuildBinary(dir, "fdholderd")
	if err == nil {
		fdclientBin, err = testutil.BuildBinary(dir, "fdclient")
	}
	if err != nil {
		buildErr = err
		fmt.Fprintf(os.Stderr, "e2e: the tests that need the binaries will fail: %v\n", err)
	}
	return m.Run()
}

// needBinaries fails the test when TestMain could not build the binaries:
// a project that does not build is a failure, not a missing peer.
func needBinaries(t testing.TB) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the binaries under test: %v", buildErr)
	}
}

// Bounds of every wait in this package. They are generous: they exist so
// that a hang fails with a message instead of the go test timeout, not to
// measure speed.
const (
	startTimeout = 15 * time.Second // a process to become ready
	exitTimeout  = 15 * time.Second // a process to exit once asked to
)

// childEnv is the environment for the processes the tests start: this
// process's environment without the variables that would make them think
// they are socket-activated or supervised (sd_listen_fds(3), sd_notify(3)),
// nor a GUNICORN_CMD_ARGS that would change gunicorn's configuration.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "GUNICORN_CMD_ARGS":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// process is a child process of the test. Its output goes to files in the
// test's directory, shown in the log when the test fails.
type process struct {
	name    string
	cmd     *exec.Cmd
	outPath string // stdout
	errPath string // stderr; the same file as stdout when they are merged
	done    chan struct{}
	err     error // Wait's result, set before done is closed
}

// startProcess starts args[0] with args[1:] in dir, stdout to outPath and
// stderr to errPath (both to outPath when errPath is empty). At the end of
// the test a process still running is killed (SIGKILL, by its pid) and
// reaped, and when the test failed its output is logged.
func startProcess(t testing.TB, name, dir, outPath, errPath string, args ...string) *process {
	t.Helper()
	p := &process{name: name, outPath: outPath, errPath: errPath, done: make(chan struct{})}
	if p.errPath == "" {
		p.errPath = outPath
	}
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	defer out.Close() // the child has its own copy
	errf := out
	if errPath != "" {
		if errf, err = os.Create(errPath); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		defer errf.Close()
	}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Dir = dir
	p.cmd.Env = childEnv()
	p.cmd.Stdout = out
	p.cmd.Stderr = errf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.logOutput(t)
		}
	})
	return p
}

// pid is the process's id. For "fdclient exec" it is also the program's,
// since fdclient replaces itself with it (execve(2) keeps the pid).
func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s (pid %d): %v", sig, p.name, p.pid(), err)
	}
}

// wait waits for the process to exit and returns Wait's error; it fails the
// test if the process is still running after timeout.
func (p *process) wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s (pid %d) still running %v after it was asked to exit", p.name, p.pid(), timeout)
		return nil
	}
}

// logOutput puts the process's output in the test log.
func (p *process) logOutput(t testing.TB) {
	t.Helper()
	paths := []string{p.outPath}
	if p.errPath != p.outPath {
		paths = append(paths, p.errPath)
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Logf("%s output %s: %v", p.name, path, err)
			continue
		}
		t.Logf("%s (pid %d) output, %s:\n%s", p.name, p.pid(), filepath.Base(path), b)
	}
}

// holderd is a running fdholderd.
type holderd struct {
	socket string
	proc   *process
}

// startHolder starts fdholderd on a socket in a short directory (socket
// paths are limited to 108 bytes, unix(7)) and waits until it accepts
// connections. At the end of the test it is stopped with SIGTERM, which must
// make it exit 0.
func startHolder(t testing.TB, dir string) *holderd {
	t.Helper()
	needBinaries(t)
	h := &holderd{socket: filepath.Join(testutil.ShortDir(t), "h.sock")}
	h.proc = startProcess(t, "fdholderd", dir, filepath.Join(dir, "fdholderd.log"), "",
		fdholderdBin, "--socket", h.socket, "--log-format", "console", "--log-level", "debug")
	testutil.WaitFor(t, startTimeout, "fdholderd to serve on "+h.socket, func() bool {
		if h.proc.exited() {
			t.Fatalf("fdholderd exited before serving: %v", h.proc.err)
		}
		c, err := net.Dial("unixpacket", h.socket)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	t.Cleanup(func() {
		if h.proc.exited() {
			t.Errorf("fdholderd exited during the test: %v", h.proc.err)
			return
		}
		h.proc.signal(t, syscall.SIGTERM)
		if err := h.proc.wait(t, exitTimeout); err != nil {
			t.Errorf("fdholderd after SIGTERM: %v, want exit status 0", err)
		}
	})
	return h
}

// listEntry is one entry of "fdclient list --json". Only the fields the
// tests read are declared.
type listEntry struct {
	Name      string `json:"name"`
	Network   string `json:"network"`
	Address   string `json:"address"`
	Listening bool   `json:"listening"`
	Queued    uint32 `json:"queued"`
	Backlog   uint32 `json:"backlog"`
}

// fdclient runs fdclient against the holder and returns its stdout; it
// fails the test, with stderr, when fdclient fails.
func (h *holderd) fdclient(t testing.TB, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fdclientBin, append([]string{"--socket", h.socket}, args...)...)
	cmd.Env = childEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fdclient %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// list returns the holder's entries, through "fdclient list --json".
func (h *holderd) list(t testing.TB) []listEntry {
	t.Helper()
	out := h.fdclient(t, "list", "--json")
	var entries []listEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("fdclient list --json: decode %q: %v", out, err)
	}
	return entries
}

// entry returns the entry name, and whether the holder has it.
func (h *holderd) entry(t testing.TB, name string) (listEntry, bool) {
	t.Helper()
	for _, e := range h.list(t) {
		if e.Name == name {
			return e, true
		}
	}
	return listEntry{}, false
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago: the
// baselines without a holder need a number to give gunicorn's --bind, and
// bind it again at every restart. (With the holder, port 0 is bound once
// and read back, which has no race.) The port is outside the kernel's
// ephemeral range (net.ipv4.ip_local_port_range): a port in it can be taken
// between two gunicorns by any outgoing connection on the machine, wrk's
// own included (a connect from port P to port P with nothing listening
// connects to itself), and gunicorn then cannot bind it again ("Connection
// in use"). Ports outside the range are only ever taken by an explicit bind.
func freePort(t testing.TB) int {
	t.Helper()
	lo, hi := 32768, 60999 // the kernel's default range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, _ = strconv.Atoi(f[0])
			hi, _ = strconv.Atoi(f[1])
		}
	}
	for range 200 {
		port := 10000 + rand.IntN(55000)
		if port >= lo && port <= hi {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use: try another
		}
		ln.Close()
		return port
	}
	t.Fatalf("free port: no free port outside the ephemeral range %d-%d in 200 tries", lo, hi)
	return 0
}

// isRefused reports whether err is a refused connection (ECONNREFUSED:
// nothing listens on the port, tcp(7)).
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

func itoa(n int) string { return strconv.Itoa(n) }
