package main

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/testutil"
)

// onPrivateTable runs f on a thread with a descriptor table of its own, as
// execWithFDs does, and ends that thread afterwards, so that nothing f
// does to descriptors reaches the test process. The thread is never the
// thread group leader: /proc/self shows the leader's table, which the leak
// checks of every later test read, and the runtime keeps the leader alive
// (with its table) even when a goroutine exits locked to it.
func onPrivateTable(t testing.TB, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	private := func() {
		// Never unlocked: the runtime ends the thread with the goroutine.
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			done <- errors.New("on the thread group leader")
			return
		}
		if err := unix.Unshare(unix.CLONE_FILES); err != nil {
			done <- err
			return
		}
		done <- f()
	}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if unix.Gettid() != unix.Getpid() {
			private()
			return
		}
		// This goroutine holds the leader, so a new one runs elsewhere.
		inner := make(chan struct{})
		go func() {
			defer close(inner)
			private()
		}()
		<-inner
	}()
	return <-done
}

// TestCloexec checks both ways of marking descriptors close-on-exec, in a
// private descriptor table: every descriptor from the first one on gets
// FD_CLOEXEC, the ones below keep their flags. The walk must read this
// thread's table (/proc/thread-self), not the process's: the descriptors it
// must mark exist in the private table only. CheckLeaks proves that they
// never reached the process's table.
func TestCloexec(t *testing.T) {
	testutil.CheckLeaks(t)
	tests := []struct {
		name string
		mark func(first int) error
	}{
		{"close_range", cloexecFrom},
		{"walk of /proc/thread-self/fd", cloexecWalk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := onPrivateTable(t, func() error {
				// Descriptors without O_CLOEXEC, in this table only.
				var fds []int
				for range 4 {
					fd, err := unix.Dup(0)
					if err != nil {
						return err
					}
					fds = append(fds, fd)
				}
				keep, first := fds[0], fds[1]
				if err := tt.mark(first); err != nil {
					return err
				}
				for _, fd := range fds {
					flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
					if err != nil {
						return err
					}
					if got, want := flags&unix.FD_CLOEXEC != 0, fd != keep; got != want {
						t.Errorf("fd %d: FD_CLOEXEC %v, want %v (marked from %d on)", fd, got, want, first)
					}
				}
				for _, fd := range fds {
					unix.Close(fd)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
