package proto

// This file is the blocking counterpart of conn.go: the same sendmsg and
// recvmsg with SCM_RIGHTS (unix(7)), on a socket in blocking mode that the
// Go runtime's netpoller never sees.

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/sockfd"
)

// BlockingConn is one end of a connection to a holder, as Conn, on a
// socket in blocking mode outside the runtime's netpoller: a request and
// its reply are one sendmsg(2) and one recvmsg(2), with no EAGAIN, no
// epoll_pwait and no goroutine parked and woken in between. The calling
// goroutine keeps its thread while it waits.
//
// Deadlines become the socket's SO_SNDTIMEO and SO_RCVTIMEO (socket(7)),
// set only when the one in place would outlast the deadline; a call that
// times out before the deadline (an older, shorter timeout) sets the right
// one and tries again. Shutdown wakes a blocked call from another
// goroutine. Other calls must not run concurrently with each other.
type BlockingConn struct {
	fd    *sockfd.FD
	oob   []byte // the receive control buffer
	sendb []byte // the send control buffer, made on the first send with descriptors

	deadline time.Time
	// The socket's current SO_SNDTIMEO and SO_RCVTIMEO; 0: none.
	sndTimeo, rcvTimeo time.Duration
}

// timeoSlack is how much later than its deadline a call may end: the
// kernel counts these timeouts in jiffies (sock_set_timeout in
// net/core/sock.c), 1 to 10 ms, so a closer fit would buy nothing and cost
// a setsockopt(2) per call.
const timeoSlack = 10 * time.Millisecond

// DialBlocking connects to the holder listening at path with a blocking
// socket. A connect(2) that finds the holder's backlog full (EAGAIN) is
// retried until ctx is done; the socket is non-blocking only during
// connect, so that nothing waits there without ctx.
func DialBlocking(ctx context.Context, path string) (*BlockingConn, error) {
	n, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, dialError(path, os.NewSyscallError("socket", err))
	}
	fd := sockfd.New(n)
	sa := &unix.SockaddrUnix{Name: path}
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err = unix.Connect(fd.Sysfd(), sa)
		if err != unix.EAGAIN && err != unix.EINTR {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			fd.Close()
			return nil, dialError(path, ctx.Err())
		case <-t.C:
		}
	}
	if err == nil {
		// One F_SETFL, without the F_GETFL of unix.SetNonblock: the
		// socket is this function's, and O_NONBLOCK is the only flag
		// F_SETFL can set on it (fcntl(2)), so 0 clears exactly that.
		_, err = unix.FcntlInt(uintptr(fd.Sysfd()), unix.F_SETFL, 0)
		err = os.NewSyscallError("fcntl", err)
	} else {
		err = os.NewSyscallError("connect", err)
	}
	if err != nil {
		fd.Close()
		return nil, dialError(path, err)
	}
	return &BlockingConn{fd: fd, oob: make([]byte, oobSize)}, nil
}

// dialError says what net.Dial would: "dial unixpacket PATH: connect: ...".
func dialError(path string, err error) error {
	return &net.OpError{Op: "dial", Net: "unixpacket", Addr: &net.UnixAddr{Name: path, Net: "unixpacket"}, Err: err}
}

// Close closes the connection. It must not run concurrently with any other
// call, Shutdown included.
func (c *BlockingConn) Close() error { return c.fd.Close() }

// Shutdown shuts the connection down in both directions (shutdown(2)): a
// call blocked in it returns at once, with io.EOF or EPIPE, and so does
// every later one. It may run concurrently with other calls, not with
// Close.
func (c *BlockingConn) Shutdown() error {
	return os.NewSyscallError("shutdown", unix.Shutdown(c.fd.Sysfd(), unix.SHUT_RDWR))
}

// SetDeadline sets the time after which sends and receives fail with
// os.ErrDeadlineExceeded; the zero time means none. It makes no system
// call: the socket's timeouts follow at the next send or receive.
func (c *BlockingConn) SetDeadline(t time.Time) { c.deadline = t }

// PeerCred returns the credentials of the peer process as the kernel
// recorded them at connect time (SO_PEERCRED, unix(7)).
func (c *BlockingConn) PeerCred() (*unix.Ucred, error) {
	cred, err := unix.GetsockoptUcred(c.fd.Sysfd(), unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return nil, os.NewSyscallError("getsockopt SO_PEERCRED", err)
	}
	return cred, nil
}

// arm makes sure the socket timeout of opt (SO_SNDTIMEO or SO_RCVTIMEO),
// whose value is *cur, ends a call no later than timeoSlack after the
// deadline. retry is set after a call timed out: then the timeout is set to
// exactly what is left, or to none without a deadline.
func (c *BlockingConn) arm(opt int, cur *time.Duration, retry bool) error {
	var left time.Duration // 0: no deadline
	if !c.deadline.IsZero() {
		if left = time.Until(c.deadline); left <= 0 {
			return os.ErrDeadlineExceeded
		}
		// Rounded up to what the kernel counts (SO_*TIMEO take
		// microseconds), so that a timeout never ends before the deadline.
		left = left.Truncate(time.Microsecond) + time.Microsecond
	}
	switch {
	case retry:
	case left == 0:
		return nil // an older timeout ends the call early: it is retried
	case *cur != 0 && *cur <= left+timeoSlack:
		return nil
	}
	tv := unix.NsecToTimeval(int64(left))
	if err := unix.SetsockoptTimeval(c.fd.Sysfd(), unix.SOL_SOCKET, opt, &tv); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	*cur = left
	return nil
}

// SendConn is SendFDs with the descriptor of sc (a *net.TCPListener, an
// *os.File, ...), which stays owned by the caller. The descriptor is used
// inside sc's SyscallConn().Control, so it cannot be closed underneath.
func (c *BlockingConn) SendConn(b []byte, sc syscall.Conn) error {
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("descriptor: %w", err)
	}
	var werr error
	if len(c.sendb) < rightsOneSize {
		c.sendb = make([]byte, rightsOneSize)
	}
	if err := rc.Control(func(fd uintptr) { werr = c.send(b, rightsIn(c.sendb, int(fd))) }); err != nil {
		return fmt.Errorf("descriptor: %w", err)
	}
	return werr
}

// SendFDs writes one message with duplicates of fds attached, in order, in
// one SCM_RIGHTS control message (at most MaxMessageFDs). fds stay owned
// by the caller, who must keep them open until SendFDs returns.
func (c *BlockingConn) SendFDs(b []byte, fds []*sockfd.FD) error {
	if len(fds) > MaxMessageFDs {
		return Errorf(CodeTooLarge, "%d descriptors in one message, the kernel passes at most %d", len(fds), MaxMessageFDs)
	}
	var oob []byte
	if len(fds) > 0 {
		if len(c.sendb) < oobSize {
			c.sendb = make([]byte, oobSize)
		}
		data := rightsHeader(c.sendb, len(fds))
		for i, f := range fds {
			putRight(data, i, f.Sysfd())
		}
		oob = c.sendb[:unix.CmsgSpace(4*len(fds))]
	}
	return c.send(b, oob)
}

// send is one blocking sendmsg(2) of b with the control data oob, within
// the deadline. MSG_NOSIGNAL: a peer that is gone is EPIPE, not SIGPIPE.
func (c *BlockingConn) send(b, oob []byte) error {
	for retry := false; ; retry = true {
		if err := c.arm(unix.SO_SNDTIMEO, &c.sndTimeo, retry); err != nil {
			return err
		}
		n, err := sendmsg(c.fd.Sysfd(), b, oob, unix.MSG_NOSIGNAL)
		switch {
		case err == unix.EINTR:
			retry = false
			continue
		case err == unix.EAGAIN:
			continue // timed out: arm says whether the deadline has passed
		case err != nil:
			return os.NewSyscallError("sendmsg", err)
		case n != len(b):
			// SOCK_SEQPACKET writes are all or nothing; this is a kernel surprise.
			return fmt.Errorf("short write: %d of %d bytes", n, len(b))
		}
		return nil
	}
}

// RecvFDs reads one message into b, within the deadline, and appends every
// descriptor that arrived with it to fds, in order; the caller owns them.
// On an error every descriptor that arrived is closed and fds is returned
// as it was. The errors are Conn.RecvFDs's: an *Error for a message the
// kernel truncated, io.EOF at the end of the stream (or after Shutdown).
//
// spare, if not nil, is an FD that owns nothing and that only the caller
// refers to: the first descriptor received is put in it rather than in a
// new FD, so that a receive allocates nothing.
func (c *BlockingConn) RecvFDs(b []byte, fds []*sockfd.FD, spare *sockfd.FD) (n int, _ []*sockfd.FD, err error) {
	var oobn, flags int
	for retry := false; ; retry = true {
		if err = c.arm(unix.SO_RCVTIMEO, &c.rcvTimeo, retry); err != nil {
			return 0, fds, err
		}
		n, oobn, flags, err = recvmsg(c.fd.Sysfd(), b, c.oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			retry = false
			continue
		}
		if err != unix.EAGAIN {
			break
		}
	}
	if err != nil {
		return 0, fds, os.NewSyscallError("recvmsg", err)
	}
	start := len(fds)
	if oobn > 0 {
		eachRight(c.oob[:oobn], func(n int) {
			if spare != nil && spare.Reset(n) {
				fds, spare = append(fds, spare), nil
				return
			}
			fds = append(fds, sockfd.New(n))
		})
	}
	if err = recvStatus(n, len(fds)-start, flags, len(b)); err != nil {
		return n, closeFrom(fds, start), err
	}
	return n, fds, nil
}

// sendmsg is sendmsg(2) of one buffer to the connected peer: x/sys's
// Sendmsg moves its message header to the heap on every call.
func sendmsg(fd int, p, oob []byte, flags int) (int, error) {
	n, _, _, err := msgcall(unix.SYS_SENDMSG, fd, p, oob, flags)
	return n, err
}
