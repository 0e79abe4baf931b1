package e2e

import (
	"bufio"
	"fmt"
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

// procChildren returns the pids of pid's children, from
// /proc/PID/task/TID/children of every thread (proc(5)).
func procChildren(t testing.TB, pid int) []int {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
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

// procIdentity is a pid with the start time the kernel recorded for it, so
// that a pid reused by another process after ours died is not mistaken for
// ours, and never signalled.
type procIdentity struct {
	pid   int
	start uint64 // field 22 of /proc/PID/stat, in clock ticks since boot
}

// procStat returns the state and start time of pid from /proc/PID/stat, and
// false when there is no such process.
func procStat(pid int) (state byte, start uint64, ok bool) {
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

// alive reports whether the process still runs. A zombie does not: it has
// exited, and the kernel closed its descriptors when it did. Orphans are
// reaped by the pid-1 of the namespace, which the test does not control.
func (p procIdentity) alive() bool {
	state, start, ok := procStat(p.pid)
	return ok && start == p.start && state != 'Z' && state != 'X'
}

// kill sends SIGKILL to the process if it is still the one recorded.
func (p procIdentity) kill(t testing.TB) {
	t.Helper()
	if !p.alive() {
		return
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		t.Errorf("kill -9 %d: %v", p.pid, err)
	}
}

// socketInodes returns the inodes of the sockets pid has open: the links in
// /proc/PID/fd read "socket:[INODE]" (proc(5)).
func socketInodes(pid int) map[uint64]bool {
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

// tcpListeners returns the TCP sockets in the LISTEN state (st 0A) of this
// network namespace, from /proc/net/tcp and /proc/net/tcp6 (proc(5)), as
// inode to local port.
func tcpListeners(t testing.TB) map[uint64]int {
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

// openersOf returns the pids of every process that has the socket inode
// open, from /proc/*/fd.
func openersOf(inode uint64) []int {
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
		if socketInodes(pid)[inode] {
			pids = append(pids, pid)
		}
	}
	return pids
}
