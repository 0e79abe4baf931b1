package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// enosysEnv makes this test binary, run with it set to the path of a
// program, hide pidfd_getfd(2) behind a seccomp filter and execute that
// program with the binary's arguments: the program then runs as on a
// kernel without pidfd_getfd (before Linux 5.6), which this machine is not.
const enosysEnv = "FDCLIENT_TEST_EXEC_WITHOUT_PIDFD_GETFD"

// init runs before TestMain, so the filtered run never reaches the tests.
func init() {
	prog := os.Getenv(enosysEnv)
	if prog == "" {
		return
	}
	if err := hidePidfdGetfd(); err != nil {
		fmt.Fprintf(os.Stderr, "seccomp: %v\n", err)
		os.Exit(99)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, enosysEnv+"=") })
	err := syscall.Exec(prog, append([]string{prog}, os.Args[1:]...), env)
	fmt.Fprintf(os.Stderr, "exec %s: %v\n", prog, err)
	os.Exit(99)
}

// hidePidfdGetfd installs a seccomp filter (seccomp(2)) on every thread of
// this process that fails pidfd_getfd with ENOSYS, what a kernel without the
// call returns, and allows everything else. Filters survive execve(2).
// The call's number is 438 on every architecture (the unified syscall
// table from Linux 5.1 on), so the filter need not check the architecture.
func hidePidfdGetfd() error {
	runtime.LockOSThread()
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_PIDFD_GETFD},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// Without CAP_SYS_ADMIN a filter needs no_new_privs (seccomp(2)).
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_SET_NO_NEW_PRIVS", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&prog))); e != 0 {
		return os.NewSyscallError("seccomp SECCOMP_SET_MODE_FILTER", e)
	}
	runtime.KeepAlive(filter)
	return nil
}

// TestAdoptWithoutPidfdGetfd runs fdclient adopt as on a kernel without
// pidfd_getfd: the error says what is missing, nothing is stored, and the
// process keeps its descriptors.
func TestAdoptWithoutPidfdGetfd(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	p := testutil.StartSocketProcess(t, "tcp")
	defer p.KeepsFDs(t)()
	tcp := p.Sockets["tcp"][0]
	tests := []struct {
		name string
		args []string
	}{
		{"by address", []string{"web", "tcp:" + tcp.Address}},
		{"by fd", []string{"--fd", strconv.Itoa(tcp.FD), "web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"--socket", h.Path, "adopt", "--pid", strconv.Itoa(p.PID)}, tt.args...)
			cmd := exec.Command(self, args...)
			cmd.Env = append(os.Environ(), enosysEnv+"="+fdclientBin, "GORACE=atexit_sleep_ms=0")
			r := wait(t, cmd)
			if r.code != exitError {
				t.Fatalf("fdclient %v without pidfd_getfd: %v, want exit %d", args, r, exitError)
			}
			for _, w := range []string{"pidfd_getfd: function not implemented", "pidfd_getfd(2) needs Linux 5.6", "seccomp"} {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q, want it to say %q", r.stderr, w)
				}
			}
			if n := len(listJSON(t, h.Path)); n != 0 {
				t.Errorf("%d entries held, want none", n)
			}
		})
	}
}
