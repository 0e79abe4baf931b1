package main

// This file arranges the descriptors "fdclient exec" hands to PROG, and
// executes it. What PROG must find, per sd_listen_fds(3): the sockets at
// descriptors 3, 4, ... (SD_LISTEN_FDS_START is 3) in LISTEN_FDNAMES order,
// open across execve(2), and nothing else of fdclient's above 2, whether
// fdclient opened it or inherited it without O_CLOEXEC from its own parent.
//
// The hazard: the target slots 3, 4, ... are rarely free. The Go runtime
// keeps descriptors of its own there (the cgroup CPU limit files it
// re-reads to update GOMAXPROCS, the epoll instance and eventfd of its
// netpoller, created as soon as a standard stream or a fetched socket is
// non-blocking), and so do inherited descriptors. Putting a socket over the
// runtime's epoll descriptor in the process's shared descriptor table would
// make any other thread's next epoll_wait(2) fail, and the runtime throws
// on that. So the rearranging is done in a descriptor table private to one
// thread: runtime.LockOSThread, then unshare(2) with CLONE_FILES. The other
// threads keep the shared table, untouched, until execve(2) kills them;
// execve(2) gives the new program the calling thread's table. The runtime
// creates new threads from a template thread when the creating thread is
// locked, so the private table is never shared with another thread.

import (
	"math"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/sockfd"
)

// listenFDsStart is SD_LISTEN_FDS_START of sd_listen_fds(3).
const listenFDsStart = 3

// execWithFDs replaces the process image with the program at path (argv,
// env as execve(2) takes them) holding fds at descriptors 3, 4, ... in
// order, with no other descriptor above 2 open. Standard input, output and
// error are left as they are, and so is every descriptor's O_NONBLOCK flag,
// which belongs to the open file description shared with other processes.
//
// It returns only on failure. fds stay owned by the caller, but on
// failure the calling goroutine is left locked to a thread whose descriptor
// table is no longer the process's: the caller must not close fds or
// open anything, only report the error and exit.
func execWithFDs(path string, argv, env []string, fds []*sockfd.FD) error {
	n := len(fds)
	limit := listenFDsStart + n // the lowest descriptor that is not a target

	src := make([]int, n)
	for i, f := range fds {
		src[i] = f.Sysfd()
	}

	// Never unlocked: from unshare on, this thread must not run anything
	// but this goroutine (runtime.LockOSThread), and if the goroutine ends
	// locked, the runtime ends the thread instead of reusing it.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		runtime.UnlockOSThread() // nothing has changed yet
		return os.NewSyscallError("unshare CLONE_FILES", err)
	}

	// Step 1: move every socket above the target slots. A socket may sit
	// in another socket's target slot (or its own); the copies at limit
	// and above make the order of step 2 irrelevant. They are
	// close-on-exec, so they vanish in execve(2).
	moved := make([]int, n)
	for i, fd := range src {
		m, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, limit)
		if err != nil {
			return os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
		}
		moved[i] = m
	}

	// Step 2: dup3(2) each copy to its slot, without O_CLOEXEC so that it
	// survives execve(2). dup3 closes whatever held the slot (an inherited
	// descriptor, the runtime's copy in this private table, the original
	// of a socket already copied) atomically.
	for i, m := range moved {
		if err := unix.Dup3(m, listenFDsStart+i, 0); err != nil {
			return os.NewSyscallError("dup3 to "+strconv.Itoa(listenFDsStart+i), err)
		}
	}

	// Step 3: everything from limit on closes on exec, including
	// descriptors fdclient inherited without O_CLOEXEC.
	if err := cloexecFrom(limit); err != nil {
		return err
	}

	err := syscall.Exec(path, argv, env)
	runtime.KeepAlive(fds) // the originals stay open until here
	return &os.PathError{Op: "execve", Path: path, Err: err}
}

// cloexecFrom marks every descriptor from first on close-on-exec, in the
// calling thread's descriptor table.
func cloexecFrom(first int) error {
	// close_range(2) with CLOSE_RANGE_CLOEXEC: one call, Linux 5.11 and
	// later. Older kernels answer EINVAL (or ENOSYS before 5.9), and a
	// seccomp filter may refuse it (EPERM): walk the table then.
	if err := unix.CloseRange(uint(first), math.MaxUint, unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	return cloexecWalk(first)
}

// cloexecWalk is cloexecFrom without close_range(2): it sets FD_CLOEXEC on
// each descriptor listed in /proc/thread-self/fd. Not /proc/self/fd: that
// lists the thread group leader's table, which is not this thread's after
// unshare(2).
func cloexecWalk(first int) error {
	dir, err := unix.Open("/proc/thread-self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/proc/thread-self/fd", Err: err}
	}
	defer unix.Close(dir)
	var fds []int
	buf := make([]byte, 4096)
	for {
		nb, err := unix.ReadDirent(dir, buf)
		if err != nil {
			return &os.PathError{Op: "getdents", Path: "/proc/thread-self/fd", Err: err}
		}
		if nb <= 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:nb], -1, nil)
		for _, name := range names {
			fd, err := strconv.Atoi(name)
			if err == nil && fd >= first && fd != dir {
				fds = append(fds, fd)
			}
		}
	}
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && err != unix.EBADF {
			return os.NewSyscallError("fcntl F_SETFD "+strconv.Itoa(fd), err)
		}
	}
	return nil
}
