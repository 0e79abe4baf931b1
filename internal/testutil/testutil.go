package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequirePeersEnv names the environment switch that turns a skip for a
// missing real peer (gunicorn, wrk, systemd...) into a failure. CI sets it.
const RequirePeersEnv = "FDHOLDER_REQUIRE_PEERS"

// NeedPeer skips the test with a clear message when a real peer is missing,
// or fails it when RequirePeersEnv is set.
func NeedPeer(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequirePeersEnv) != "" {
		t.Fatalf("real peer missing and %s is set: %s", RequirePeersEnv, msg)
	}
	t.Skipf("skipping: real peer missing: %s (set %s=1 to make this a failure)", msg, RequirePeersEnv)
}

// ShortDir returns a new directory short enough for Unix socket paths (108
// bytes; t.TempDir() can be longer), removed at the end of the test.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "fdh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// OpenFDs returns the descriptors this process has open, as numbers mapped
// to what they point at.
func OpenFDs(t testing.TB) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[string]string, len(ents))
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the descriptor ReadDir itself used, now closed
		}
		fds[e.Name()] = target
	}
	return fds
}

// leakSettle bounds CheckLeaks' wait for descriptors closed by goroutines
// that end after the test: such a goroutine must first be scheduled, and
// on a 2-core machine at a load of 40 (other engineers' tests, CI's
// packages run in parallel) each thread gets a few percent of a core, so
// the 2s it used to be left a thin margin.
const leakSettle = 20 * time.Second

// CheckLeaks records the process's open descriptors now and fails the test
// if, at its end, descriptors are open that were not. Closing is sometimes
// done by goroutines that outlive a request by a moment, so it waits up to
// leakSettle for the count to settle: a passing test ends as soon as it
// has, and a leak never settles, so the bound only says how long a failing
// test takes. Call it first in a test, so that its cleanup runs after every
// other cleanup.
func CheckLeaks(t testing.TB) {
	t.Helper()
	before := OpenFDs(t)
	t.Cleanup(func() {
		var leaked []string
		for deadline := time.Now().Add(leakSettle); ; {
			leaked = leaked[:0]
			for fd, target := range OpenFDs(t) {
				if _, ok := before[fd]; !ok {
					leaked = append(leaked, fd+" -> "+target)
				}
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if len(leaked) > 0 {
			sort.Strings(leaked)
			t.Errorf("descriptor leak: %d open now that were not before:\n  %s", len(leaked), strings.Join(leaked, "\n  "))
		}
	})
}

// CountFDs returns how many descriptors process pid has open.
func CountFDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// BuildBinary builds the command ./cmd/NAME (with -race, like the tests)
// into dir and returns its path. Meant for TestMain, so it reports errors
// instead of failing a test.
func BuildBinary(dir, name string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-race", "-o", bin, "./cmd/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin, nil
}

// BuildShipped builds the commands ./cmd/NAME... into dir as they are
// shipped: static (CGO_ENABLED=0) and without -race (the units run them
// under MemoryDenyWriteExecute=yes, and the man pages and completions read
// their --help).
func BuildShipped(t testing.TB, dir string, names ...string) {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"build", "-o", dir + "/"}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// ModuleRoot returns the directory of the module's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the fdholder module")
	}
	return filepath.Dir(gomod), nil
}

// StartUntilLine starts cmd, waits until the first line it writes to its
// standard output is want, and returns a stop function that closes its
// standard input and waits for it to exit (also run at the end of the
// test). It is for helper processes that hold a condition (a flood of
// requests, say) until told to stop. cmd's Stdin and Stdout must be unset.
func StartUntilLine(t testing.TB, cmd *exec.Cmd, want string) (stop func()) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, done := make(chan string, 1), make(chan struct{})
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(done)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { stdin.Close(); <-done }) }
	t.Cleanup(stop)
	if s := <-line; s != want+"\n" {
		stop()
		t.Fatalf("%s: first line %q, want %q; stderr:\n%s", cmd.Path, s, want, stderr.String())
	}
	return stop
}

// ListenTCP returns a TCP listener on 127.0.0.1 at a port the kernel
// picks, closed at the end of the test.
func ListenTCP(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// StartTied starts cmd so that the kernel kills it (SIGKILL) if the test
// process dies first (PR_SET_PDEATHSIG, prctl(2)). The signal fires when
// the *thread* that forked exits, and the Go runtime ends a thread whose
// goroutine exits while locked to it: so cmd is started from a thread of
// its own, kept until release is called, after cmd has been reaped.
func StartTied(cmd *exec.Cmd) (release func(), err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started, done := make(chan error), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		started <- cmd.Start()
		<-done
		runtime.UnlockOSThread()
	}()
	if err := <-started; err != nil {
		close(done)
		return nil, err
	}
	return func() { close(done) }, nil
}

// CloseRights closes every descriptor that the ancillary data oob (as
// recvmsg(2) filled it) carried in SCM_RIGHTS messages (unix(7)): a test
// that reads such messages only to drain them must close what they bring.
func CloseRights(oob []byte) {
	msgs, _ := syscall.ParseSocketControlMessage(oob)
	for _, m := range msgs {
		fds, _ := syscall.ParseUnixRights(&m)
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}
