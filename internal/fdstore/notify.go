package fdstore

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// sendTimeout bounds one notification: systemd reads its notification
// socket at once, so a send that blocks this long means the manager is
// stuck, and the holder must not be.
const sendTimeout = 5 * time.Second

// Notifier sends notifications with descriptors to the service manager
// (sd_pid_notify_with_fds(3)). go-systemd's daemon.SdNotify cannot attach
// descriptors, which FDSTORE=1 needs. A Notifier is safe for concurrent
// use.
//
// It owns a blocking, unbound AF_UNIX SOCK_DGRAM socket kept out of the Go
// netpoller, as sd_notify's own: Go's net package refuses WriteMsgUnix on a
// connected datagram socket, and an unconnected one needs an address per
// send, which sendmsg(2) takes here directly. SO_SNDTIMEO bounds a send.
type Notifier struct {
	fd int
	mu sync.Mutex // guards sa: x/sys/unix encodes it in place on each send
	sa *unix.SockaddrUnix
}

// ErrNoNotifySocket is returned by OpenNotifier when NOTIFY_SOCKET is unset.
var ErrNoNotifySocket = errors.New("NOTIFY_SOCKET is not set: no service manager to notify")

// OpenNotifier returns a Notifier for the socket named by $NOTIFY_SOCKET: a
// path, or an abstract name if it starts with '@' (sd_notify(3)). The caller
// must Close it.
func OpenNotifier() (*Notifier, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil, ErrNoNotifySocket
	}
	return NewNotifier(addr)
}

// NewNotifier returns a Notifier for the datagram socket at addr (a path,
// or '@' and an abstract name, which x/sys/unix maps to a leading NUL). The
// caller must Close it.
func NewNotifier(addr string) (*Notifier, error) {
	if addr == "" || len(addr) >= len(unix.RawSockaddrUnix{}.Path) {
		return nil, fmt.Errorf("notify socket %q: not a Unix socket address", addr)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("notify socket %s: %w", addr, os.NewSyscallError("socket", err))
	}
	tv := unix.NsecToTimeval(sendTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("notify socket %s: %w", addr, os.NewSyscallError("setsockopt SO_SNDTIMEO", err))
	}
	return &Notifier{fd: fd, sa: &unix.SockaddrUnix{Name: addr}}, nil
}

// Close closes the Notifier's socket.
func (n *Notifier) Close() error { return os.NewSyscallError("close", unix.Close(n.fd)) }

// Send sends one notification, state being newline-separated assignments
// such as "FDSTORE=1\nFDNAME=x", with the descriptors fds attached as
// SCM_RIGHTS (unix(7)). The descriptors stay owned by the caller, who must
// keep them open until Send returns; the kernel gives the receiver its own
// copies. There is no acknowledgement (sd_notify(3)): a nil error means the
// message reached the socket, not that the manager acted on it.
func (n *Notifier) Send(state string, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		err := unix.Sendmsg(n.fd, []byte(state), oob, n.sa, unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("notify %s: %w", firstLine(state), os.NewSyscallError("sendmsg", err))
		}
		return nil
	}
}
func firstLine(s string) string {
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// Store sends descriptor fd to the file descriptor store under name
// (FDSTORE=1, FDNAME=). FDPOLL=0 keeps systemd from dropping it when it
// reports POLLHUP, which an unconnected TCP socket does (sd_notify(3)).
// fd stays owned by the caller.
func (n *Notifier) Store(name string, fd int) error {
	return n.Send("FDSTORE=1\nFDNAME="+name+"\nFDPOLL=0", fd)
}

// Remove drops every descriptor stored under name (FDSTOREREMOVE=1).
func (n *Notifier) Remove(name string) error {
	return n.Send("FDSTOREREMOVE=1\nFDNAME=" + name)
}
