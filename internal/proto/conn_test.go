package proto

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/testutil"
)

// pair returns the two ends of a SOCK_SEQPACKET socketpair: a Conn to test
// and a raw descriptor to write arbitrary messages from.
func pair(t testing.TB) (*Conn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "conn")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(fc.(*net.UnixConn))
	t.Cleanup(func() { c.Close(); unix.Close(fds[1]) })
	return c, fds[1]
}

// pipes opens n pipes and returns their read ends; the write ends are
// closed. They are closed at the end of the test.
func pipes(t testing.TB, n int) []int {
	t.Helper()
	var fds []int
	for range n {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		unix.Close(p[1])
		fds = append(fds, p[0])
	}
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	return fds
}

func inode(t testing.TB, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestRecvDescriptors(t *testing.T) {
	tests := []struct {
		name    string
		msg     []byte
		fds     int
		bufSize int
		code    Code // CodeOK: success
		keep    bool // one descriptor is returned
	}{
		{name: "no descriptor", msg: []byte("hello"), code: CodeOK},
		{name: "one descriptor", msg: []byte("hello"), fds: 1, code: CodeOK, keep: true},
		{name: "two descriptors", msg: []byte("hello"), fds: 2, code: CodeBadDescriptors},
		{name: "the most the kernel passes", msg: []byte("hello"), fds: MaxMessageFDs, code: CodeBadDescriptors},
		{name: "too long with a descriptor", msg: make([]byte, 100), fds: 1, bufSize: 10, code: CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			c, peer := pair(t)
			sent := pipes(t, tt.fds)
			var oob []byte
			if len(sent) > 0 {
				oob = unix.UnixRights(sent...)
			}
			if err := unix.Sendmsg(peer, tt.msg, oob, nil, 0); err != nil {
				t.Fatal(err)
			}
			size := tt.bufSize
			if size == 0 {
				size = 64
			}
			n, fd, err := c.Recv(make([]byte, size))
			if tt.code == CodeOK && err != nil {
				t.Fatalf("Recv: %v", err)
			}
			if tt.code != CodeOK && CodeOf(err) != tt.code {
				t.Fatalf("Recv err = %v, want code %v", err, tt.code)
			}
			if tt.code == CodeOK && n != len(tt.msg) {
				t.Errorf("n = %d, want %d", n, len(tt.msg))
			}
			if (fd != nil) != tt.keep {
				t.Fatalf("fd = %v, want one: %v", fd, tt.keep)
			}
			if fd != nil {
				if inode(t, fd.Sysfd()) != inode(t, sent[0]) {
					t.Error("received descriptor is not the one sent")
				}
				if err := fd.Close(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestRecvControlTruncated makes the kernel truncate the control data
// (MSG_CTRUNC) with a control buffer too small for what was sent: the
// descriptors that did arrive must be closed and the error reported.
func TestRecvControlTruncated(t *testing.T) {
	testutil.CheckLeaks(t)
	c, peer := pair(t)
	c.oob = make([]byte, unix.CmsgSpace(2*4)) // room for two
	if err := unix.Sendmsg(peer, []byte("x"), unix.UnixRights(pipes(t, 5)...), nil, 0); err != nil {
		t.Fatal(err)
	}
	_, fd, err := c.Recv(make([]byte, 16))
	if !errors.Is(err, ErrBadDescriptors) || fd != nil {
		t.Fatalf("Recv = %v, %v; want ErrBadDescriptors and no descriptor", fd, err)
	}
}

func TestRecvEOF(t *testing.T) {
	c, peer := pair(t)
	unix.Shutdown(peer, unix.SHUT_WR)
	if _, _, err := c.Recv(make([]byte, 16)); !errors.Is(err, io.EOF) || !IsClosed(err) {
		t.Fatalf("Recv after the peer's shutdown: %v, want io.EOF", err)
	}
}

func TestSendDescriptor(t *testing.T) {
	testutil.CheckLeaks(t)
	a, peer := pair(t)
	b := func() *Conn {
		// A duplicate, not an *os.File of peer: that file's finalizer would
		// close peer's number a second time (pair closes it) at some later
		// GC, whatever descriptor has that number by then.
		dup, err := unix.FcntlInt(uintptr(peer), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		g := os.NewFile(uintptr(dup), "peer")
		fc, err := net.FileConn(g)
		g.Close()
		if err != nil {
			t.Fatal(err)
		}
		c := NewConn(fc.(*net.UnixConn))
		t.Cleanup(func() { c.Close() })
		return c
	}()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// SendConn: the descriptor of a listener, used inside Control.
	if err := a.SendConn([]byte("one"), ln); err != nil {
		t.Fatal(err)
	}
	n, fd, err := b.Recv(make([]byte, 16))
	if err != nil || n != 3 || fd == nil {
		t.Fatalf("Recv = %d, %v, %v", n, fd, err)
	}
	// Send: the descriptor of an FD, which stays owned by the sender.
	if err := b.Send([]byte("two"), fd); err != nil {
		t.Fatal(err)
	}
	n, back, err := a.Recv(make([]byte, 16))
	if err != nil || n != 3 || back == nil {
		t.Fatalf("Recv = %d, %v, %v", n, back, err)
	}
	rc, _ := ln.SyscallConn()
	rc.Control(func(raw uintptr) {
		if inode(t, back.Sysfd()) != inode(t, int(raw)) || inode(t, fd.Sysfd()) != inode(t, int(raw)) {
			t.Error("the descriptors that came back are not the listener's socket")
		}
	})
	fd.Close()
	f := back.File("back")
	if back.Sysfd() != -1 {
		t.Error("File did not release the FD")
	}
	f.Close()
	if err := back.Close(); err != nil {
		t.Errorf("Close of a released FD: %v", err)
	}
}
