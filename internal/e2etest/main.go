package e2etest

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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// The binaries under test, built once by BuildBinaries (from a TestMain).
// BuildErr is set instead when they could not be built; the tests that
// need them fail with it, the others still run.
var (
	FdholderdBin string
	FdclientBin  string
	BuildErr     error
)

// BuildBinaries builds fdholderd and fdclient (with -race) into dir and
// sets FdholderdBin and FdclientBin, or BuildErr, which it also returns.
func BuildBinaries(dir string) error {
	FdholderdBin, BuildErr = testutil.BuildBinary(dir, "fdholderd")
	if BuildErr == nil {
		FdclientBin, BuildErr = testutil.BuildBinary(dir, "fdclient")
	}
	return BuildErr
}

// Main is a TestMain's body: it builds the binaries into a temporary
// directory, and with each of build whatever else the package needs (its
// error is reported, and the tests that need that build fail on their own),
// runs the tests, removes the directory (which os.Exit in TestMain would
// skip) and returns the exit code. When the binaries cannot be built, the
// tests still run: those that need them fail with the reason
// (NeedBinaries), the others pass or fail on their own.
func Main(m *testing.M, build ...func(dir string) error) int {
	dir, err := os.MkdirTemp("", "fdholder-test-bin")
	if err != nil {
		fmt.Fprintf(os.Stderr, "temporary directory for binaries: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := BuildBinaries(dir); err != nil {
		fmt.Fprintf(os.Stderr, "the tests that need the binaries will fail: %v\n", err)
	}
	for _, b := range build {
		if err := b(dir); err != nil {
			fmt.Fprintf(os.Stderr, "the tests that need it will fail: %v\n", err)
		}
	}
	return m.Run()
}

// NeedBinaries fails the test when BuildBinaries could not build the
// binaries: a project that does not build is a failure, not a missing peer.
func NeedBinaries(t testing.TB) {
	t.Helper()
	if BuildErr != nil {
		t.Fatalf("building the binaries under test: %v", BuildErr)
	}
}

// Bounds of every wait in this package. They are generous: they exist so
// that a hang fails with a message instead of the go test timeout, not to
// measure speed. At a load of 50 on a 2-core machine a runnable process
// gets a few percent of a core, and a gunicorn start (Python importing
// its modules) took over 15 s.
const (
	StartTimeout = 60 * time.Second // a process to become ready
	ExitTimeout  = 60 * time.Second // a process to exit once asked to
)

// ChildEnv is the environment for the processes the tests start: this
// process's environment without the variables that would make them think
// they are socket-activated or supervised (sd_listen_fds(3), sd_notify(3)),
// nor a GUNICORN_CMD_ARGS that would change gunicorn's configuration, nor
// the variables named in drop.
func ChildEnv(drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "GUNICORN_CMD_ARGS":
			continue
		}
		if slices.Contains(drop, name) {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Process is a child process of the test. Its output goes to files in the
// test's directory, shown in the log when the test fails.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	OutPath string // stdout
	ErrPath string // stderr; the same file as stdout when they are merged
	done    chan struct{}
	err     error // Wait's result, set before done is closed
}

// StartProcess starts args[0] with args[1:] in dir, stdout to outPath and
// stderr to errPath (both to outPath when errPath is empty). At the end of
// the test a process still running is killed (SIGKILL, by its pid) and
// reaped, and when the test failed its output is logged.
func StartProcess(t testing.TB, name, dir, outPath, errPath string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, OutPath: outPath, ErrPath: errPath, done: make(chan struct{})}
	if p.ErrPath == "" {
		p.ErrPath = outPath
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
	p.Cmd = exec.Command(args[0], args[1:]...)
	p.Cmd.Dir = dir
	p.Cmd.Env = ChildEnv()
	p.Cmd.Stdout = out
	p.Cmd.Stderr = errf
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.LogOutput(t)
		}
	})
	return p
}

// Pid is the process's id. For "fdclient exec" it is also the program's,
// since fdclient replaces itself with it (execve(2) keeps the pid).
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has exited (and been reaped).
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process; it fails the test if it cannot.
func (p *Process) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s (pid %d): %v", sig, p.Name, p.Pid(), err)
	}
}

// Wait waits for the process to exit and returns Wait's error; it fails the
// test if the process is still running after timeout.
func (p *Process) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s (pid %d) still running %v after it was asked to exit", p.Name, p.Pid(), timeout)
		return nil
	}
}

// Err is the error of the process's exit: nil for exit status 0. It
// waits for the exit.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Kill kills the process with SIGKILL, by its pid, unless it has exited,
// and waits until it is reaped.
func (p *Process) Kill() {
	if !p.Exited() {
		_ = p.Cmd.Process.Kill()
	}
	<-p.done
}

// LogOutput puts the process's output in the test log.
func (p *Process) LogOutput(t testing.TB) {
	t.Helper()
	paths := []string{p.OutPath}
	if p.ErrPath != p.OutPath {
		paths = append(paths, p.ErrPath)
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Logf("%s output %s: %v", p.Name, path, err)
			continue
		}
		t.Logf("%s (pid %d) output, %s:\n%s", p.Name, p.Pid(), filepath.Base(path), b)
	}
}

// WaitFor polls cond every 20 ms until it holds, and fails the test with
// what after timeout. cond reads a fact (a log line, a process state, a
// kernel counter); the timeout only bounds a hang.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Holder is a running fdholderd.
type Holder struct {
	Socket string
	Proc   *Process
}

// StartHolder starts fdholderd on a socket in a short directory (socket
// paths are limited to 108 bytes, unix(7)) and waits until it accepts
// connections. At the end of the test it is stopped with SIGTERM, which must
// make it exit 0.
func StartHolder(t testing.TB, dir string) *Holder {
	t.Helper()
	NeedBinaries(t)
	h := &Holder{Socket: filepath.Join(testutil.ShortDir(t), "h.sock")}
	h.Proc = StartProcess(t, "fdholderd", dir, filepath.Join(dir, "fdholderd.log"), "",
		FdholderdBin, "--socket", h.Socket, "--log-format", "console", "--log-level", "debug")
	WaitFor(t, StartTimeout, "fdholderd to serve on "+h.Socket, func() bool {
		if h.Proc.Exited() {
			t.Fatalf("fdholderd exited before serving: %v", h.Proc.Err())
		}
		c, err := net.Dial("unixpacket", h.Socket)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	t.Cleanup(func() {
		if h.Proc.Exited() {
			t.Errorf("fdholderd exited during the test: %v", h.Proc.Err())
			return
		}
		h.Proc.Signal(t, syscall.SIGTERM)
		if err := h.Proc.Wait(t, ExitTimeout); err != nil {
			t.Errorf("fdholderd after SIGTERM: %v, want exit status 0", err)
		}
	})
	return h
}

// ListEntry is one entry of "fdclient list --json". Only the fields the
// tests read are declared.
type ListEntry struct {
	Name      string `json:"name"`
	Network   string `json:"network"`
	Address   string `json:"address"`
	Listening bool   `json:"listening"`
	Queued    uint32 `json:"queued"`
	Backlog   uint32 `json:"backlog"`
}

// FDClient runs fdclient against the holder and returns its stdout; it
// fails the test, with stderr, when fdclient fails.
func (h *Holder) FDClient(t testing.TB, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, FdclientBin, append([]string{"--socket", h.Socket}, args...)...)
	cmd.Env = ChildEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fdclient %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// List returns the holder's entries, through "fdclient list --json".
func (h *Holder) List(t testing.TB) []ListEntry {
	t.Helper()
	out := h.FDClient(t, "list", "--json")
	var entries []ListEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("fdclient list --json: decode %q: %v", out, err)
	}
	return entries
}

// Entry returns the entry name, and whether the holder has it.
func (h *Holder) Entry(t testing.TB, name string) (ListEntry, bool) {
	t.Helper()
	for _, e := range h.List(t) {
		if e.Name == name {
			return e, true
		}
	}
	return ListEntry{}, false
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: the
// baselines without a holder need a number to give a server's bind, and
// bind it again at every restart. (With the holder, port 0 is bound once
// and read back, which has no race.)
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePortOn(t, "127.0.0.1")
}

// FreePortOn is FreePort on the address host. The port is outside the
// kernel's ephemeral range (net.ipv4.ip_local_port_range): a port in it
// can be taken between two server generations by any outgoing connection
// on the machine, wrk's own included (a connect from port P to port P with
// nothing listening connects to itself), and the server then cannot bind
// it again ("Connection in use"). Ports outside the range are only ever
// taken by an explicit bind.
func FreePortOn(t testing.TB, host string) int {
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
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue // in use: try another
		}
		ln.Close()
		return port
	}
	t.Fatalf("free port on %s: no free port outside the ephemeral range %d-%d in 200 tries", host, lo, hi)
	return 0
}

// IsRefused reports whether err is a refused connection (ECONNREFUSED:
// nothing listens on the port, tcp(7)).
func IsRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
