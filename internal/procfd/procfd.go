package procfd

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/sockfd"
)

var (
	// ErrNoProcess: no process has the pid, or it exited.
	ErrNoProcess = errors.New("no such process")

	// ErrDenied: the kernel refused access to the process's descriptors
	// (the ptrace access mode check of ptrace(2)).
	ErrDenied = errors.New("access to the process's descriptors denied")
)

// Process is another process, pinned by a pidfd: descriptors copied through
// it come from that very process even if its pid is reused meanwhile
// (pidfd_getfd then fails with ESRCH instead).
type Process struct {
	PID   int
	pidfd *sockfd.FD // owns the pidfd; sockfd.FD owns any descriptor
}

// Open pins process pid. The caller must Close the Process.
func Open(pid int) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("process %d: %w", pid, ErrNoProcess)
	}
	n, err := unix.PidfdOpen(pid, 0)
	switch {
	case err == nil:
		return &Process{PID: pid, pidfd: sockfd.New(n)}, nil
	case errors.Is(err, unix.ESRCH):
		return nil, fmt.Errorf("process %d: %w", pid, ErrNoProcess)
	case errors.Is(err, unix.EINVAL):
		// pidfd_open(2): EINVAL when pid is not a thread-group leader.
		return nil, fmt.Errorf("process %d: %w (%d is a thread of another process, not a process)", pid, ErrNoProcess, pid)
	case errors.Is(err, unix.ENOSYS):
		return nil, fmt.Errorf("process %d: %w (pidfd_open(2) needs Linux 5.3 and pidfd_getfd(2) Linux 5.6, and no seccomp filter that hides them; this kernel is %s)",
			pid, os.NewSyscallError("pidfd_open", err), kernelRelease())
	}
	return nil, fmt.Errorf("process %d: %w", pid, os.NewSyscallError("pidfd_open", err))
}

// Close releases the pidfd.
func (p *Process) Close() error { return p.pidfd.Close() }

// String names the process for messages: "process 123 (python3)".
func (p *Process) String() string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.PID))
	if err != nil {
		return fmt.Sprintf("process %d", p.PID)
	}
	return fmt.Sprintf("process %d (%s)", p.PID, strings.TrimSpace(string(b)))
}

// Socket is a descriptor of the process that is a socket.
type Socket struct {
	FD    int
	Inode uint64 // the same inode at several descriptors is one socket
}

// Sockets lists the process's descriptors that are sockets, in descriptor
// order: the links in /proc/PID/fd read "socket:[INODE]" (proc(5)). Reading
// them needs the ptrace read access mode (ptrace(2)), a weaker form of what
// Copy needs, so a refusal here is explained the same way.
func (p *Process) Sockets() ([]Socket, error) {
	dir := fmt.Sprintf("/proc/%d/fd", p.PID)
	d, err := os.Open(dir)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%v: %w", p, ErrNoProcess)
		case errors.Is(err, os.ErrPermission):
			return nil, p.denied("read "+dir, err)
		}
		return nil, fmt.Errorf("%v: %w", p, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("%v: read %s: %w", p, dir, err)
	}
	var socks []Socket
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		// A descriptor closed since the directory was read has no link any
		// more: it is no candidate.
		target, err := os.Readlink(dir + "/" + name)
		if err != nil {
			continue
		}
		s, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		inode, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
		if err != nil {
			continue
		}
		socks = append(socks, Socket{FD: fd, Inode: inode})
	}
	slices.SortFunc(socks, func(a, b Socket) int { return a.FD - b.FD })
	return socks, nil
}

// Copy copies descriptor fd of the process into this one with
// pidfd_getfd(2). The copy refers to the same open file description (the
// same socket, sharing its O_NONBLOCK flag) and has FD_CLOEXEC; the caller
// owns it and must close it. Copying never changes anything in the process.
func (p *Process) Copy(fd int) (*sockfd.FD, error) {
	n, err := unix.PidfdGetfd(p.pidfd.Sysfd(), fd, 0)
	switch {
	case err == nil:
		return sockfd.New(n), nil
	case errors.Is(err, unix.EBADF):
		return nil, fmt.Errorf("%v: descriptor %d is not open: %w", p, fd, os.NewSyscallError("pidfd_getfd", err))
	case errors.Is(err, unix.ESRCH):
		return nil, fmt.Errorf("%v: %w (it exited)", p, ErrNoProcess)
	case errors.Is(err, unix.EPERM):
		return nil, p.denied(fmt.Sprintf("copy descriptor %d", fd), os.NewSyscallError("pidfd_getfd", err))
	case errors.Is(err, unix.ENOSYS):
		return nil, fmt.Errorf("%v: copy descriptor %d: %w (pidfd_getfd(2) needs Linux 5.6, and no seccomp filter that hides it; this kernel is %s)",
			p, fd, os.NewSyscallError("pidfd_getfd", err), kernelRelease())
	}
	return nil, fmt.Errorf("%v: copy descriptor %d: %w", p, fd, os.NewSyscallError("pidfd_getfd", err))
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
