package e2etest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// What /proc tells about processes and sockets (proc(5)). The tests use it
// to find gunicorn's workers, to prove which socket gunicorn serves, and to
// prove that no server process is left after a kill -9.

// Children returns the pids of pid's children, from
// /proc/PID/task/TID/children of every thread (proc(5)); none once pid is
// gone.
func Children(t testing.TB, pid int) []int {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if os.IsNotExist(err) {
		return nil // gone: no children
	}
	if err != nil {
		t.Fatalf("children of %d: %v", pid, err)
	}
	var kids []int
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		for _, f := range strings.Fields(string(b)) {
			kid, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("children of %d: %q: %v", pid, f, err)
			}
			kids = append(kids, kid)
		}
	}
	return kids
}

// Identity is a pid with the start time the kernel recorded for it, so
// that a pid reused by another process after ours died is not mistaken for
// ours, and never signalled.
type Identity struct {
	Pid   int
	Start uint64 // field 22 of /proc/PID/stat, in clock ticks since boot
}

// Stat returns the state and start time of pid from /proc/PID/stat, and
// false when there is no such process.
func Stat(pid int) (state byte, start uint64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after it start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(fields[19], 10, 64) // field 22
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], start, true
}

// Identify records pid's identity; it fails the test if pid is gone.
func Identify(t testing.TB, pid int) Identity {
	t.Helper()
	_, start, ok := Stat(pid)
	if !ok {
		t.Fatalf("process %d: gone", pid)
	}
	return Identity{Pid: pid, Start: start}
}

// alive reports whether the process still runs. A zombie does not: it has
// exited, and the kernel closed its descriptors when it did. Orphans are
// reaped by the pid-1 of the namespace, which the test does not control.
func (p Identity) Alive() bool {
	state, start, ok := Stat(p.Pid)
	return ok && start == p.Start && state != 'Z' && state != 'X'
}

// kill sends SIGKILL to the process if it is still the one recorded.
func (p Identity) Kill(t testing.TB) {
	t.Helper()
	if !p.Alive() {
		return
	}
	if err := syscall.Kill(p.Pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		t.Errorf("kill -9 %d: %v", p.Pid, err)
	}
}

// SocketInodes returns the inodes of the sockets pid has open: the links in
// /proc/PID/fd read "socket:[INODE]" (proc(5)).
func SocketInodes(pid int) map[uint64]bool {
	inodes := make(map[uint64]bool)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return inodes
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(target, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				inodes[n] = true
			}
		}
	}
	return inodes
}

// TCPListeners returns the TCP sockets in the LISTEN state (st 0A) of this
// network namespace, from /proc/net/tcp and /proc/net/tcp6 (proc(5)), as
// inode to local port.
func TCPListeners(t testing.TB) map[uint64]int {
	t.Helper()
	ls := make(map[uint64]int)
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(path)
		if err != nil {
			if os.IsNotExist(err) {
				continue // no IPv6
			}
			t.Fatalf("listeners: %v", err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			port, err1 := strconv.ParseUint(hexPort, 16, 16)
			inode, err2 := strconv.ParseUint(fs[9], 10, 64)
			if err1 != nil || err2 != nil {
				f.Close()
				t.Fatalf("listeners: %s: bad line %q", path, sc.Text())
			}
			ls[inode] = int(port)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			t.Fatalf("listeners: %s: %v", path, err)
		}
	}
	return ls
}

// OpenersOf returns the pids of every process that has the socket inode
// open, from /proc/*/fd.
func OpenersOf(inode uint64) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if SocketInodes(pid)[inode] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ListenersOn returns the inodes of the TCP sockets listening on port.
func ListenersOn(t testing.TB, port int) []uint64 {
	t.Helper()
	var inodes []uint64
	for inode, p := range TCPListeners(t) {
		if p == port {
			inodes = append(inodes, inode)
		}
	}
	return inodes
}

// ServerSideInode returns the inode of the established socket on
// serverPort whose peer is clientPort, from /proc/net/tcp (proc(5)); 0 while
// it waits in the accept queue or when there is none.
func ServerSideInode(t testing.TB, serverPort, clientPort int) uint64 {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatalf("connections: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "01" { // ESTABLISHED
			continue
		}
		_, lp, _ := strings.Cut(fs[1], ":")
		_, rp, _ := strings.Cut(fs[2], ":")
		l, err1 := strconv.ParseUint(lp, 16, 16)
		r, err2 := strconv.ParseUint(rp, 16, 16)
		if err1 != nil || err2 != nil || int(l) != serverPort || int(r) != clientPort {
			continue
		}
		inode, err := strconv.ParseUint(fs[9], 10, 64)
		if err != nil {
			t.Fatalf("connections: bad line %q", sc.Text())
		}
		return inode
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("connections: %v", err)
	}
	return 0
}

// WaitAccepted waits until one of the processes procs has accepted c,
// and returns its pid. A connection still in the accept queue has no file,
// so /proc/net/tcp shows it with the inode 0; once accepted, the inode is
// that of the socket the process has open.
func WaitAccepted(t testing.TB, c net.Conn, procs []Identity) int {
	t.Helper()
	local := c.LocalAddr().(*net.TCPAddr).Port
	server := c.RemoteAddr().(*net.TCPAddr).Port
	acceptor := 0
	WaitFor(t, StartTimeout, "the server to accept the connection", func() bool {
		inode := ServerSideInode(t, server, local)
		if inode == 0 {
			return false
		}
		for _, pid := range OpenersOf(inode) {
			for _, p := range procs {
				if p.Pid == pid {
					acceptor = pid
					return true
				}
			}
		}
		return false
	})
	return acceptor
}
