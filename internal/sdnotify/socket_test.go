package sdnotify

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/sockfd"
	"github.com/fdholder/fdholder/internal/testutil"
)

func TestOpenSocketUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if s, err := OpenSocket(); !errors.Is(err, ErrNoNotifySocket) {
		if s != nil {
			s.Close()
		}
		t.Errorf("OpenSocket() with NOTIFY_SOCKET unset = %v, want ErrNoNotifySocket", err)
	}
}

// TestSocketStore: FDSTORE=1 arrives with the descriptor attached as
// SCM_RIGHTS, and Store only borrows it: the caller's copy stays open.
func TestSocketStore(t *testing.T) {
	testutil.CheckLeaks(t)
	m := listenManager(t)
	s, err := OpenSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	fd, w := sockfd.New(p[0]), sockfd.New(p[1])
	defer w.Close()
	defer fd.Close()

	tests := []struct {
		name  string
		send  func() error
		state string
		fds   int
	}{
		{"store", func() error { return s.Store("fhm1", fd) }, "FDSTORE=1\nFDNAME=fhm1\nFDPOLL=0", 1},
		{"remove", func() error { return s.Remove("fhm1") }, "FDSTOREREMOVE=1\nFDNAME=fhm1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.send(); err != nil {
				t.Fatal(err)
			}
			buf, oob := make([]byte, 512), make([]byte, unix.CmsgSpace(4*4))
			n, oobn, _, _, err := m.conn.ReadMsgUnix(buf, oob)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != tt.state {
				t.Errorf("state %q, want %q", got, tt.state)
			}
			var got []int
			if oobn > 0 {
				msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
				if err != nil {
					t.Fatal(err)
				}
				for _, msg := range msgs {
					fds, err := unix.ParseUnixRights(&msg)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, fds...)
				}
			}
			for _, n := range got {
				unix.Close(n)
			}
			if len(got) != tt.fds {
				t.Errorf("%d descriptors attached, want %d", len(got), tt.fds)
			}
		})
	}
	// Borrowed, not taken: the caller's descriptor is still open.
	if _, err := unix.FcntlInt(uintptr(fd.Sysfd()), unix.F_GETFD, 0); err != nil {
		t.Errorf("the stored descriptor was closed: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
