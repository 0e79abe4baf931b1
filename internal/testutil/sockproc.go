package testutil

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// SocketProcess is another process, a Python interpreter, that holds
// sockets of its own, for the tests that take sockets out of a process
// (pidfd_getfd(2)). It owns them until the end of the test.
type SocketProcess struct {
	PID  int
	stop func()
	// Sockets maps each spec StartSocketProcess was given to the
	// descriptors it made, in the process's numbering, with their local
	// addresses.
	Sockets map[string][]ProcSocket
}

// ProcSocket is one descriptor of a SocketProcess.
type ProcSocket struct {
	FD      int    `json:"fd"`
	Address string `json:"addr"` // host:port, or a Unix path
}

// sockScript makes the sockets, prints their descriptors as one JSON line
// and waits for its standard input to close.
const sockScript = `
import json, os, socket, sys
keep, out = [], {}
def tcp(reuse=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return s
def addr(s):
    a = s.getsockname()
    if isinstance(a, str):
        return a
    return ("[%s]:%d" if s.family == socket.AF_INET6 else "%s:%d") % a[:2]
for spec in sys.argv[1:]:
    kind, _, arg = spec.partition("=")
    made = []
    if kind == "tcp":
        s = tcp(); s.bind(("127.0.0.1", 0)); s.listen(16); made = [s]
    elif kind == "tcp6":
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); s.bind(("::1", 0)); s.listen(16); made = [s]
    elif kind == "reuseport":
        a = tcp(True); a.bind(("127.0.0.1", 0)); a.listen(16)
        b = tcp(True); b.bind(a.getsockname()); b.listen(16); made = [a, b]
    elif kind == "accepted":
        l = tcp(); l.bind(("127.0.0.1", 0)); l.listen(16)
        c = socket.create_connection(l.getsockname()); a, _ = l.accept(); made = [l, a, c]
    elif kind == "dup":
        s = tcp(); s.bind(("127.0.0.1", 0)); s.listen(16); made = [s, s.dup()]
    elif kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); made = [s]
    elif kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(arg); s.listen(16); made = [s]
    elif kind == "setuid":
        # What servers do once bound: drop root. Changing credentials
        # makes the process non-dumpable (prctl(2) PR_SET_DUMPABLE).
        n = int(arg); os.setgroups([]); os.setgid(n); os.setuid(n)
        continue
    elif kind == "dumpable":
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(4, int(arg), 0, 0, 0) != 0:  # PR_SET_DUMPABLE
            raise SystemExit("prctl PR_SET_DUMPABLE: errno %d" % ctypes.get_errno())
        continue
    elif kind == "pipe":
        r, w = os.pipe(); keep.extend([r, w])
        out[spec] = [{"fd": r, "addr": ""}]
        continue
    else:
        raise SystemExit("unknown spec " + spec)
    keep.extend(made)
    out[spec] = [{"fd": s.fileno(), "addr": addr(s)} for s in made]
print(json.dumps(out), flush=True)
sys.stdin.read()
`

// StartSocketProcess starts a process holding the sockets of specs: "tcp"
// (a TCP listener on 127.0.0.1, port picked by the kernel), "tcp6" (one on
// ::1), "reuseport"
// (two TCP listeners on one port, SO_REUSEPORT), "accepted" (a listener, a
// connection it accepted and its client), "dup" (a listener at two
// descriptors), "udp" (a bound UDP socket), "unix=PATH" (a Unix listener),
// "pipe" (a pipe's read end, not a socket); and it changes its own state:
// "setuid=UID" (uid and gid UID, no groups: the process is then not
// dumpable), "dumpable=0|1" (prctl PR_SET_DUMPABLE). Specs apply in order.
// It returns once they exist;
// the process exits at the end of the test. It needs python3; without it the
// test is skipped (failed under RequirePeersEnv).
func StartSocketProcess(t testing.TB, specs ...string) *SocketProcess {
	t.Helper()
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		py, err = exec.LookPath("python3")
	}
	NeedPeer(t, err == nil, "python3 (apt-get install python3): %v", err)
	cmd := exec.Command(py, append([]string{"-c", sockScript}, specs...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start python3: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			stdin.Close()
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("socket process %v: %v", specs, err)
	}
	p := &SocketProcess{PID: cmd.Process.Pid, stop: stop}
	if err := json.Unmarshal(line, &p.Sockets); err != nil {
		t.Fatalf("socket process %v: %q: %v", specs, line, err)
	}
	return p
}

// Stop makes the process exit, closing its sockets, and waits for it.
func (p *SocketProcess) Stop(t testing.TB) {
	t.Helper()
	p.stop()
}

// KeepsFDs returns a check that fails the test if the process has another
// number of descriptors open than now: taking sockets out of a process
// (pidfd_getfd(2)) must never change its table. Call the check before the
// process is stopped.
func (p *SocketProcess) KeepsFDs(t testing.TB) (check func()) {
	t.Helper()
	before := CountFDs(t, p.PID)
	return func() {
		t.Helper()
		if after := CountFDs(t, p.PID); after != before {
			t.Errorf("process %d has %d descriptors open, had %d", p.PID, after, before)
		}
	}
}

// NoPID returns a pid no process has: kernel.pid_max, which pids stay
// below (proc(5)).
func NoPID(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
