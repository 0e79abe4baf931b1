package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/testutil"
)

func TestAdopt(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	sockPath := filepath.Join(testutil.ShortDir(t), "app.sock")
	p := testutil.StartSocketProcess(t, "tcp", "reuseport", "udp", "unix="+sockPath, "pipe")
	checkFDs := p.KeepsFDs(t)
	pid := strconv.Itoa(p.PID)
	tcp, pair, udp, pipe := p.Sockets["tcp"][0], p.Sockets["reuseport"], p.Sockets["udp"][0], p.Sockets["pipe"][0]
	unixLn := p.Sockets["unix="+sockPath][0]
	_, tcpPort, _ := net.SplitHostPort(tcp.Address)
	adopted := func(fd int, what, name string) string {
		return fmt.Sprintf("adopted %q from fd %d of process %d (python3): %s\n", name, fd, p.PID, what)
	}

	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    string
		stderr    []string // in stderr
		entry     string   // held afterwards
		network   string
		address   string
		listAfter int  // entries held after the command
		expires   bool // the entry has an expiry time
	}{
		{name: "dry run", args: []string{"adopt", "--dry-run", "--pid", pid, "web", "tcp:" + tcp.Address},
			stdout: fmt.Sprintf("would adopt %q from fd %d of process %d (python3): tcp %s, listening\n", "web", tcp.FD, p.PID, tcp.Address)},
		{name: "by address", args: []string{"adopt", "--pid", pid, "web", "tcp::" + tcpPort},
			stdout: adopted(tcp.FD, "tcp "+tcp.Address+", listening", "web"), entry: "web", network: "tcp", address: tcp.Address, listAfter: 1},
		{name: "held name", args: []string{"adopt", "--pid", pid, "--fd", strconv.Itoa(tcp.FD), "web"},
			code: exitExists, stderr: []string{"already held (use --replace)"}, listAfter: 1},
		{name: "replace by fd", args: []string{"adopt", "--replace", "--pid", pid, "--fd", strconv.Itoa(tcp.FD), "web"},
			stdout: adopted(tcp.FD, "tcp "+tcp.Address+", listening", "web"), entry: "web", network: "tcp", address: tcp.Address, listAfter: 1},
		{name: "udp", args: []string{"adopt", "--pid", pid, "dns", "udp:" + udp.Address},
			stdout: adopted(udp.FD, "udp "+udp.Address, "dns"), entry: "dns", network: "udp", address: udp.Address, listAfter: 2},
		{name: "unix listener", args: []string{"adopt", "--pid", pid, "app", "unix:" + sockPath},
			stdout: adopted(unixLn.FD, "unix "+sockPath+", listening", "app"), entry: "app", network: "unix", address: sockPath, listAfter: 3},
		{name: "reuseport pair", args: []string{"adopt", "--pid", pid, "pair", "tcp:" + pair[0].Address},
			code: exitError, listAfter: 3, stderr: []string{"several sockets match", "use --fd N",
				fmt.Sprintf("fd %d (tcp %s, listening)", pair[0].FD, pair[0].Address), fmt.Sprintf("fd %d (tcp %s, listening)", pair[1].FD, pair[1].Address)}},
		{name: "one of the pair", args: []string{"adopt", "--pid", pid, "--fd", strconv.Itoa(pair[1].FD), "pair", "tcp:" + pair[0].Address},
			stdout: adopted(pair[1].FD, "tcp "+pair[0].Address+", listening", "pair"), entry: "pair", network: "tcp", address: pair[0].Address, listAfter: 4},
		// Port 1: the process serves nothing there (its ports are ephemeral).
		{name: "no match", args: []string{"adopt", "--pid", pid, "none", "tcp:127.0.0.1:1"},
			code: exitNotFound, listAfter: 4, stderr: []string{"no matching socket", "it has tcp " + tcp.Address + ", listening (fd " + strconv.Itoa(tcp.FD) + ")", "udp " + udp.Address}},
		{name: "fd is a pipe", args: []string{"adopt", "--pid", pid, "--fd", strconv.Itoa(pipe.FD), "none"},
			code: exitError, listAfter: 4, stderr: []string{fmt.Sprintf("descriptor %d is not a socket (a pipe)", pipe.FD)}},
		{name: "fd not open", args: []string{"adopt", "--pid", pid, "--fd", "999", "none"},
			code: exitNotFound, listAfter: 4, stderr: []string{"descriptor 999 is not open"}},
		{name: "no such process", args: []string{"adopt", "--pid", strconv.Itoa(testutil.NoPID(t)), "none", "tcp:" + tcp.Address},
			code: exitNotFound, listAfter: 4, stderr: []string{"no such process"}},
		{name: "no socket named", args: []string{"adopt", "--pid", pid, "none"},
			code: exitUsage, listAfter: 4, stderr: []string{"say which socket"}},
		{name: "port 0", args: []string{"adopt", "--pid", pid, "none", "tcp:127.0.0.1:0"},
			code: exitUsage, listAfter: 4, stderr: []string{"port 0"}},
		// The same socket under a second name, expiring.
		{name: "ttl", args: []string{"adopt", "--ttl", "1h", "--pid", pid, "--fd", strconv.Itoa(tcp.FD), "web-ttl"},
			stdout: adopted(tcp.FD, "tcp "+tcp.Address+", listening", "web-ttl"), entry: "web-ttl", network: "tcp", address: tcp.Address, listAfter: 5, expires: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fdclient(t, h.Path, tt.args...)
			if r.code != tt.code {
				t.Fatalf("fdclient %v: %v, want exit %d", tt.args, r, tt.code)
			}
			if tt.code == 0 && (r.stdout != tt.stdout || r.stderr != "") {
				t.Errorf("fdclient %v: %v, want stdout %q and nothing on stderr", tt.args, r, tt.stdout)
			}
			if tt.code != 0 && (r.stdout != "" || strings.Count(strings.TrimSuffix(r.stderr, "\n"), "\n") > 0 && tt.code != exitUsage) {
				t.Errorf("fdclient %v: %v, want one line on stderr and nothing on stdout", tt.args, r)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q, want it to say %q", r.stderr, w)
				}
			}
			if n := len(listJSON(t, h.Path)); n != tt.listAfter {
				t.Errorf("%d entries held, want %d", n, tt.listAfter)
			}
			if tt.entry != "" {
				e := entry(t, h.Path, tt.entry)
				if e == nil || e["network"] != tt.network || e["address"] != tt.address {
					t.Errorf("entry %q: %v, want %s %s", tt.entry, e, tt.network, tt.address)
				}
				if _, ok := e["expires_at"]; ok != tt.expires {
					t.Errorf("entry %q: %v, want an expiry time: %v", tt.entry, e, tt.expires)
				}
			}
		})
	}

	checkFDs()
	// The process exits; its sockets live on in the holder, and a
	// connection made now is queued on the adopted listener.
	p.Stop(t)
	conn := dial(t, "tcp", tcp.Address)
	acceptsThroughHolder(t, h.Path, "web", conn)
	uconn := dial(t, "unix", sockPath)
	acceptsThroughHolder(t, h.Path, "app", uconn)
}

// nobody is the uid and gid the tests run fdclient as to be another user
// without ptrace rights over root's processes.
const nobody = 65534

// TestAdoptPtraceRules runs fdclient adopt as nobody against processes
// it has no ptrace rights over, and one it has: a process of root's (the
// kernel refuses the listing of /proc/PID/fd when selecting by address, and
// pidfd_getfd by descriptor), a server that bound as root and then became
// nobody (not dumpable: refused too), and the same server made dumpable
// again (allowed). A refusal exits 5 with the reason, stores nothing, and
// leaves no descriptor more in the process or in this test (which runs the
// holder).
func TestAdoptPtraceRules(t *testing.T) {
	testutil.NeedPeer(t, os.Geteuid() == 0, "root, to run fdclient as another uid")
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	// TestMain's directory is 0700; nobody must be able to run the binary.
	if err := os.Chmod(filepath.Dir(fdclientBin), 0o755); err != nil {
		t.Fatal(err)
	}
	root := testutil.StartSocketProcess(t, "tcp")
	dropped := testutil.StartSocketProcess(t, "tcp", fmt.Sprintf("setuid=%d", nobody))
	dumpable := testutil.StartSocketProcess(t, "tcp", fmt.Sprintf("setuid=%d", nobody), "dumpable=1")
	ids := func(uid int) string { return fmt.Sprintf("runs as uid %d gid %d", uid, uid) }
	me := fmt.Sprintf("this process runs as uid %d gid %d without CAP_SYS_PTRACE", nobody, nobody)
	tests := []struct {
		name   string
		target *testutil.SocketProcess
		byFD   bool
		dryRun bool
		code   int
		want   []string
	}{
		{"root's, by address", root, false, false, exitPermission, []string{fmt.Sprintf("read /proc/%d/fd", root.PID), ids(0), me}},
		{"root's, by fd", root, true, false, exitPermission, []string{fmt.Sprintf("copy descriptor %d", root.Sockets["tcp"][0].FD), ids(0), me}},
		{"not dumpable", dropped, false, false, exitPermission, []string{fmt.Sprintf("read /proc/%d/fd", dropped.PID), ids(nobody), me, "is not dumpable"}},
		{"dumpable, same user", dumpable, false, true, exitOK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer tt.target.KeepsFDs(t)()
			tcp := tt.target.Sockets["tcp"][0]
			args := []string{"adopt", "--pid", strconv.Itoa(tt.target.PID)}
			if tt.dryRun {
				args = append(args, "--dry-run")
			}
			if tt.byFD {
				args = append(args, "--fd", strconv.Itoa(tcp.FD), "web")
			} else {
				args = append(args, "web", "tcp:"+tcp.Address)
			}
			cmd := fdclientCmd(t, h.Path, args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			r := wait(t, cmd)
			if r.code != tt.code {
				t.Fatalf("fdclient %v as uid %d: %v, want exit %d", args, nobody, r, tt.code)
			}
			if tt.code == exitOK {
				if want := fmt.Sprintf("would adopt %q from fd %d of process %d (python3): tcp %s, listening\n", "web", tcp.FD, tt.target.PID, tcp.Address); r.stdout != want {
					t.Errorf("stdout %q, want %q", r.stdout, want)
				}
			} else {
				want := append([]string{"access to the process's descriptors denied", "ptrace attach rights",
					"kernel.yama.ptrace_scope is " + yamaScope(t)}, tt.want...)
				for _, w := range want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr %q, want it to say %q", r.stderr, w)
					}
				}
			}
			if n := len(listJSON(t, h.Path)); n != 0 {
				t.Errorf("%d entries held, want none", n)
			}
		})
	}
}

// yamaScope is how the error words kernel.yama.ptrace_scope here: its value,
// or that it is absent.
func yamaScope(t testing.TB) string {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if os.IsNotExist(err) {
		return "absent"
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
