package proto

// This file sends and receives the protocol's messages and their
// descriptors (sendmsg/recvmsg with SCM_RIGHTS, unix(7)). The holder's other
// sender of descriptors is internal/fdstore, to systemd's NOTIFY_SOCKET.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/sockfd"
)

// oobSize is a control buffer with room for MaxMessageFDs descriptors, so
// that the kernel never truncates the descriptors of a message: every one
// arrives, and Recv closes those it does not keep.
var oobSize = unix.CmsgSpace(MaxMessageFDs * 4)

// rightsOneSize is the control message of exactly one descriptor.
var rightsOneSize = unix.CmsgSpace(4)

// Conn is one end of a connection to a holder: a connected AF_UNIX
// SOCK_SEQPACKET socket. Recv and Send may run concurrently with each other
// but not with themselves.
type Conn struct {
	uc    *net.UnixConn
	oob   []byte // Recv's control buffer
	sendb []byte // Send's control buffer

	// RecvLarge's state, kept here so that a receive allocates nothing.
	rc        syscall.RawConn
	recvFn    func(uintptr) bool
	releaseFn func()
	large     largeRecv

	// The hot wait (hotwait.go): nil for none; ppoll's arguments are kept
	// here so that a wait allocates nothing.
	hot         *HotWait
	pollFD      [1]unix.PollFd
	pollTimeout unix.Timespec
	pollLeft    unix.Timespec
	hotNow      atomic.Bool // in ppoll now

	// Unsent's callback and result, kept so that it allocates nothing.
	unsentFn  func(uintptr)
	unsentN   int
	unsentErr error
}

// largeRecv is what RecvLarge's callback leaves behind.
type largeRecv struct {
	bp             *[]byte
	n, oobn, flags int
	err            error
}

// NewConn returns a Conn that owns uc and closes it on Close.
func NewConn(uc *net.UnixConn) *Conn {
	c := &Conn{uc: uc, oob: make([]byte, oobSize), sendb: make([]byte, rightsOneSize)}
	c.rc, _ = uc.SyscallConn() // never fails for a *net.UnixConn
	c.recvFn = c.recvLarge
	c.releaseFn = c.giveBack
	c.unsentFn = c.unsent
	return c
}

// Dial connects to the holder listening at path.
func Dial(ctx context.Context, path string) (*Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", path)
	if err != nil {
		return nil, err
	}
	return NewConn(c.(*net.UnixConn)), nil
}

// Close closes the connection.
func (c *Conn) Close() error {
	if c.hot != nil {
		c.wakeHot()
	}
	return c.uc.Close()
}

// SetDeadline sets the read and write deadline, as net.Conn does.
func (c *Conn) SetDeadline(t time.Time) error { return c.uc.SetDeadline(t) }

// SetReadDeadline sets the read deadline, as net.Conn does.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// UnixConn returns the underlying connection, for socket options.
func (c *Conn) UnixConn() *net.UnixConn { return c.uc }

// PeerCred returns the credentials of the peer process as the kernel
// recorded them at connect time (SO_PEERCRED, unix(7)).
func (c *Conn) PeerCred() (*unix.Ucred, error) {
	rc, err := c.uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, os.NewSyscallError("getsockopt SO_PEERCRED", cerr)
	}
	return cred, nil
}

// errCtrunc: the kernel truncated the control data (MSG_CTRUNC). It is an
// *Error so that a holder can reply with its code.
var errCtrunc = &Error{Code: CodeBadDescriptors, Message: "control data truncated (MSG_CTRUNC): descriptors were lost"}

// Recv reads one message into b and returns its length.
//
// At most one descriptor is kept: if the message carried exactly one, fd
// owns it and the caller must close it. Every other descriptor that arrives
// is closed before Recv returns, on every path: if the message carried more
// than one, all are closed and the error is an *Error of CodeBadDescriptors
// (n is still valid, so the request can be answered). A message longer than
// b fails with CodeTooLarge, truncated control data (MSG_CTRUNC) with
// CodeBadDescriptors; in both cases every descriptor that did arrive is
// closed. At the end of the stream Recv returns io.EOF; SOCK_SEQPACKET cannot
// tell an empty message from the end, so an empty message ends the stream.
func (c *Conn) Recv(b []byte) (n int, fd *sockfd.FD, err error) {
	n, oobn, flags, _, err := c.uc.ReadMsgUnix(b, c.oob)
	// The raw descriptors live only in this function: kept is wrapped in an
	// FD before it returns, and all others are closed here.
	kept, count := -1, 0
	if oobn > 0 {
		eachRight(c.oob[:oobn], func(n int) {
			count++
			if kept < 0 {
				kept = n
				return
			}
			unix.Close(n)
		})
	}
	if err == nil {
		err = recvStatus(n, count, flags, len(b))
	}
	if err == nil && count > 1 {
		err = Errorf(CodeBadDescriptors, "%d descriptors attached, at most one is accepted", count)
	}
	if err != nil {
		// On a failed recvmsg nothing was received, so kept is -1, but stay
		// safe should a future kernel return both.
		if kept >= 0 {
			unix.Close(kept)
		}
		return n, nil, err
	}
	if kept >= 0 {
		fd = sockfd.New(kept)
	}
	return n, fd, nil
}

// recvStatus says what a successful recvmsg(2) of n bytes with fds
// descriptors and these msg_flags amounts to: nil for a whole message, an
// *Error for one the kernel truncated (MSG_CTRUNC: descriptors were lost;
// MSG_TRUNC: longer than limit bytes), io.EOF at the end of the stream.
// On a non-nil result the caller closes every descriptor that arrived.
func recvStatus(n, fds, flags, limit int) error {
	switch {
	case flags&unix.MSG_CTRUNC != 0:
		return errCtrunc
	case flags&unix.MSG_TRUNC != 0:
		return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("message exceeds %d bytes", limit)}
	case n == 0 && fds == 0:
		return io.EOF
	}
	return nil
}

// eachRight calls fn with every descriptor in the SCM_RIGHTS messages of a
// control buffer filled by recvmsg.
func eachRight(oob []byte, fn func(int)) {
	hdr := unix.CmsgLen(0) // the aligned header size: where data starts
	for len(oob) >= hdr {
		// Copy the header out rather than point into oob: nothing here
		// relies on the buffer's alignment.
		var h unix.Cmsghdr
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unix.SizeofCmsghdr), oob)
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS {
			for data := oob[hdr:l]; len(data) >= 4; data = data[4:] {
				fn(int(int32(binary.NativeEndian.Uint32(data))))
			}
		}
		next := unix.CmsgSpace(l - hdr)
		if next > len(oob) {
			return
		}
		oob = oob[next:]
	}
}

// Send writes one message. If fd is not nil a duplicate of its descriptor
// travels with the message; fd stays owned by the caller, who must keep it
// open until Send returns.
func (c *Conn) Send(b []byte, fd *sockfd.FD) error {
	if fd == nil {
		return c.write(b, nil)
	}
	return c.write(b, c.rights(fd.Sysfd()))
}

// SendConn is Send with the descriptor of sc (a *net.TCPListener, an
// *os.File, ...), which stays owned by the caller. The descriptor is used
// inside sc's SyscallConn().Control, so it cannot be closed underneath.
func (c *Conn) SendConn(b []byte, sc syscall.Conn) error {
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("descriptor: %w", err)
	}
	var werr error
	if err := rc.Control(func(fd uintptr) { werr = c.write(b, c.rights(int(fd))) }); err != nil {
		return fmt.Errorf("descriptor: %w", err)
	}
	return werr
}

// rights fills the send control buffer with one SCM_RIGHTS descriptor.
func (c *Conn) rights(fd int) []byte { return rightsIn(c.sendb, fd) }

// rightsIn writes the control message of the one descriptor fd at the
// start of b (at least rightsOneSize long) and returns it.
func rightsIn(b []byte, fd int) []byte {
	putRight(rightsHeader(b, 1), 0, fd)
	return b[:rightsOneSize]
}

// rightsHeader writes at the start of b (at least unix.CmsgSpace(4*n)
// long) the header of an SCM_RIGHTS control message of n descriptors, as
// unix.UnixRights does but in place, and returns the room for them; putRight
// fills it.
func rightsHeader(b []byte, n int) []byte {
	h := unix.Cmsghdr{Level: unix.SOL_SOCKET, Type: unix.SCM_RIGHTS}
	h.SetLen(unix.CmsgLen(4 * n))
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&h)), unix.SizeofCmsghdr))
	return b[unix.CmsgLen(0):]
}

// putRight puts descriptor fd as the i-th of the room rightsHeader returned.
func putRight(data []byte, i, fd int) {
	binary.NativeEndian.PutUint32(data[4*i:], uint32(int32(fd)))
}

func (c *Conn) write(b, oob []byte) error {
	n, _, err := c.uc.WriteMsgUnix(b, oob, nil)
	if err != nil {
		return err
	}
	if n != len(b) {
		// SOCK_SEQPACKET writes are all or nothing; this is a kernel surprise.
		return fmt.Errorf("short write: %d of %d bytes", n, len(b))
	}
	return nil
}

// IsClosed reports whether err means the connection is gone: the peer
// closed it, or it was closed here.
func IsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// RecvFDs is Recv for a message that may carry many descriptors (a dump
// reply, a load request): it appends every descriptor that arrived to fds,
// in order, and returns the result, which the caller owns. On an error
// every descriptor that arrived is closed, as Recv does, and fds is
// returned as it was.
func (c *Conn) RecvFDs(b []byte, fds []*sockfd.FD) (n int, _ []*sockfd.FD, err error) {
	n, oobn, flags, _, err := c.uc.ReadMsgUnix(b, c.oob)
	start := len(fds)
	if oobn > 0 {
		eachRight(c.oob[:oobn], func(n int) { fds = append(fds, sockfd.New(n)) })
	}
	if err == nil {
		err = recvStatus(n, len(fds)-start, flags, len(b))
	}
	if err != nil {
		return n, closeFrom(fds, start), err
	}
	return n, fds, nil
}

// SendFDs writes one message with duplicates of fds attached, in order, in
// one SCM_RIGHTS control message (at most MaxMessageFDs). fds stay owned
// by the caller, who must keep them open until SendFDs returns.
func (c *Conn) SendFDs(b []byte, fds []*sockfd.FD) error {
	oob, err := rightsOfAll(fds)
	if err != nil {
		return err
	}
	return c.write(b, oob)
}

// rightsOfAll is the SCM_RIGHTS control message of fds (nil for none), or
// an *Error of CodeTooLarge past MaxMessageFDs.
func rightsOfAll(fds []*sockfd.FD) ([]byte, error) {
	if len(fds) == 0 {
		return nil, nil
	}
	if len(fds) > MaxMessageFDs {
		return nil, Errorf(CodeTooLarge, "%d descriptors in one message, the kernel passes at most %d", len(fds), MaxMessageFDs)
	}
	nums := make([]int, len(fds))
	for i, f := range fds {
		nums[i] = f.Sysfd()
	}
	return unix.UnixRights(nums...), nil
}

// Unsent returns how many bytes this end has sent that the peer has not
// read yet: SIOCOUTQ, which for an AF_UNIX socket is the memory of the
// messages still queued at the peer (unix(7)). Zero means the peer has read
// every message sent, descriptors included.
func (c *Conn) Unsent() (int, error) {
	if err := c.rc.Control(c.unsentFn); err != nil {
		return 0, err
	}
	if c.unsentErr != nil {
		return 0, os.NewSyscallError("ioctl SIOCOUTQ", c.unsentErr)
	}
	return c.unsentN, nil
}

// unsent is Unsent's callback for RawConn.Control.
func (c *Conn) unsent(fd uintptr) {
	// SIOCOUTQ is TIOCOUTQ (linux/sockios.h).
	c.unsentN, c.unsentErr = unix.IoctlGetInt(int(fd), unix.TIOCOUTQ)
}

// SendNoWait is SendFDs (Send, for one descriptor or none) that never
// waits for room at the peer and ignores the write deadline: one
// sendmsg(2) with MSG_DONTWAIT, which fails with EAGAIN if the peer's
// queue is full. A holder that is stopping replies this way, so that it
// waits for no peer that does not read.
func (c *Conn) SendNoWait(b []byte, fds []*sockfd.FD) error {
	oob, err := rightsOfAll(fds)
	if err != nil {
		return err
	}
	if cerr := c.rc.Control(func(fd uintptr) {
		err = unix.Sendmsg(int(fd), b, oob, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return os.NewSyscallError("sendmsg", err)
	}
	return nil
}

// largeBufs lends the buffers of RecvLarge.
var largeBufs = sync.Pool{New: func() any { b := make([]byte, MaxLoadRequestSize); return &b }}

// RecvLarge is RecvFDs for a message of up to MaxLoadRequestSize bytes that
// holds no large buffer between messages: it waits until the socket is
// readable (through the runtime's poller, honouring the read deadline, or
// hot, see SetHotWait) and only then borrows a buffer from a pool for
// recvmsg(2). A message that fits in small is copied there and the buffer
// goes back at once; a larger one (a load) is returned in the borrowed
// buffer. Either way the caller must call release, never nil, once done
// with msg. So a thousand idle connections cost a thousand small buffers,
// not a thousand large ones.
// Descriptors, errors and their closing are as for RecvFDs.
func (c *Conn) RecvLarge(small []byte, fds []*sockfd.FD) (msg []byte, _ []*sockfd.FD, release func(), err error) {
	c.large = largeRecv{}
	err = c.rc.Read(c.recvFn)
	r := &c.large
	if err == nil && r.err != nil {
		err = os.NewSyscallError("recvmsg", r.err)
	}
	start := len(fds)
	if err == nil && r.oobn > 0 {
		eachRight(c.oob[:r.oobn], func(n int) { fds = append(fds, sockfd.New(n)) })
	}
	if err == nil {
		err = recvStatus(r.n, len(fds)-start, r.flags, MaxLoadRequestSize)
	}
	switch err.(type) {
	case nil:
		return c.keep(small, fds, nil)
	case *Error: // as recvStatus returns it, unwrapped
		// A truncated message: its bytes are kept so that the request can
		// be answered; its descriptors are not.
		return c.keep(small, closeFrom(fds, start), err)
	}
	c.giveBack() // the end of the stream, or recvmsg failed
	return nil, closeFrom(fds, start), noRelease, err
}

// closeFrom closes fds[start:] and returns fds[:start].
func closeFrom(fds []*sockfd.FD, start int) []*sockfd.FD {
	sockfd.CloseAll(fds[start:])
	clear(fds[start:])
	return fds[:start]
}

// giveBack returns RecvLarge's borrowed buffer, if it holds one.
func (c *Conn) giveBack() {
	if c.large.bp != nil {
		largeBufs.Put(c.large.bp)
		c.large.bp = nil
	}
}

// keep returns the bytes received: copied into small if they fit (and the
// buffer given back), else in the borrowed buffer until release.
func (c *Conn) keep(small []byte, fds []*sockfd.FD, err error) ([]byte, []*sockfd.FD, func(), error) {
	n := c.large.n
	if n <= len(small) {
		m := small[:copy(small, (*c.large.bp)[:n])]
		c.giveBack()
		return m, fds, noRelease, err
	}
	return (*c.large.bp)[:n], fds, c.releaseFn, err
}

func noRelease() {}

// recvLarge is RecvLarge's callback for RawConn.Read: it borrows a buffer
// only now that the socket is readable, and gives it back if recvmsg finds
// nothing after all, not even after a hot wait (the runtime then waits in
// its netpoller).
func (c *Conn) recvLarge(fd uintptr) bool {
	r := &c.large
	r.bp = largeBufs.Get().(*[]byte)
	for {
		r.n, r.oobn, r.flags, r.err = recvmsg(int(fd), *r.bp, c.oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
		if r.err != unix.EAGAIN && r.err != unix.EINTR {
			return true
		}
		if c.hot == nil || !c.waitHot(int(fd)) {
			break
		}
	}
	largeBufs.Put(r.bp)
	r.bp = nil
	return false
}

// recvmsg is recvmsg(2) into one buffer, without a source address: the
// peer of a connected socket is known. x/sys's Recvmsg asks for the address
// and so moves its address buffer to the heap on every call, which would be
// the holder's only allocation per request.
func recvmsg(fd int, p, oob []byte, flags int) (n, oobn, recvflags int, err error) {
	return msgcall(unix.SYS_RECVMSG, fd, p, oob, flags)
}

// msgcall is recvmsg(2) or sendmsg(2) (trap) of one buffer p with the
// control data oob, without an address, its message header on the stack.
func msgcall(trap uintptr, fd int, p, oob []byte, flags int) (n, oobn, recvflags int, err error) {
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
	}
	msg := unix.Msghdr{Iov: &iov}
	msg.SetIovlen(1)
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, e := unix.Syscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	if e != 0 {
		return 0, 0, 0, e
	}
	return int(r), int(msg.Controllen), int(msg.Flags), nil
}
