package sdnotify

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/sockfd"
)

// sendTimeout bounds one notification: systemd reads its notification
// socket at once, so a send that blocks this long means the manager is
// stuck, and the holder must not be.
const sendTimeout = 5 * time.Second

// Socket sends notifications to the service manager, with descriptors
// attached or without (sd_pid_notify_with_fds(3), sd_notify(3)): it is the
// package's one way to $NOTIFY_SOCKET (go-systemd's daemon.SdNotify cannot
// attach descriptors, which FDSTORE=1 needs). A Socket is safe for
// concurrent use.
//
// It owns a blocking, unbound AF_UNIX SOCK_DGRAM socket kept out of the Go
// netpoller, as sd_notify's own: Go's net package refuses WriteMsgUnix on a
// connected datagram socket, and an unconnected one needs an address per
// send, which sendmsg(2) takes here directly. SO_SNDTIMEO bounds a send.
type Socket struct {
	fd *sockfd.FD
	mu sync.Mutex // guards sa: x/sys/unix encodes it in place on each send
	sa *unix.SockaddrUnix
}

// ErrNoNotifySocket is returned by OpenSocket when NOTIFY_SOCKET is unset.
var ErrNoNotifySocket = errors.New("NOTIFY_SOCKET is not set: no service manager to notify")

// OpenSocket returns a Socket for the socket named by $NOTIFY_SOCKET: a
// path, or an abstract name if it starts with '@' (sd_notify(3)). The caller
// must Close it.
func OpenSocket() (*Socket, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil, ErrNoNotifySocket
	}
	return NewSocket(addr)
}

// NewSocket returns a Socket for the datagram socket at addr (a path,
// or '@' and an abstract name, which x/sys/unix maps to a leading NUL). The
// caller must Close it.
func NewSocket(addr string) (*Socket, error) {
	if addr == "" || len(addr) >= len(unix.RawSockaddrUnix{}.Path) {
		return nil, fmt.Errorf("notify socket %q: not a Unix socket address", addr)
	}
	n, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("notify socket %s: %w", addr, os.NewSyscallError("socket", err))
	}
	fd := sockfd.New(n)
	tv := unix.NsecToTimeval(sendTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd.Sysfd(), unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		fd.Close()
		return nil, fmt.Errorf("notify socket %s: %w", addr, os.NewSyscallError("setsockopt SO_SNDTIMEO", err))
	}
	return &Socket{fd: fd, sa: &unix.SockaddrUnix{Name: addr}}, nil
}

// Close closes the socket. Closing again does nothing.
func (s *Socket) Close() error { return s.fd.Close() }

// Send sends one notification, state being newline-separated assignments
// such as "FDSTORE=1\nFDNAME=x", with the descriptors fds attached as
// SCM_RIGHTS (unix(7)). Send borrows fds until it returns: they stay owned
// by the caller, who must keep them open until then; the kernel gives the
// receiver its own copies. There is no acknowledgement (sd_notify(3)): a
// nil error means the message reached the socket, not that the manager
// acted on it.
func (s *Socket) Send(state string, fds ...*sockfd.FD) error {
	var oob []byte
	if len(fds) > 0 {
		raw := make([]int, len(fds))
		for i, f := range fds {
			raw[i] = f.Sysfd()
		}
		oob = unix.UnixRights(raw...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		err := unix.Sendmsg(s.fd.Sysfd(), []byte(state), oob, s.sa, unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			first, _, _ := strings.Cut(state, "\n") // the first assignment names it
			return fmt.Errorf("notify %s: %w", first, os.NewSyscallError("sendmsg", err))
		}
		return nil
	}
}

// Notify sends one notification without descriptors (READY=1, STATUS=,
// STOPPING=1) through a Socket opened and closed around the send, as
// sd_notify(3) does. It returns ErrNoNotifySocket when NOTIFY_SOCKET is
// unset.
func Notify(state string) error {
	s, err := OpenSocket()
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Send(state)
}

// Store sends descriptor fd to the file descriptor store under name
// (FDSTORE=1, FDNAME=). FDPOLL=0 keeps systemd from dropping it when it
// reports POLLHUP, which an unconnected TCP socket does (sd_notify(3)).
// Store borrows fd until it returns; fd stays owned by the caller.
func (s *Socket) Store(name string, fd *sockfd.FD) error {
	return s.Send("FDSTORE=1\nFDNAME="+name+"\nFDPOLL=0", fd)
}

// Remove drops every descriptor stored under name (FDSTOREREMOVE=1).
func (s *Socket) Remove(name string) error {
	return s.Send("FDSTOREREMOVE=1\nFDNAME=" + name)
}
