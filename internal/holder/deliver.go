package holder

import (
	"cmp"
	"errors"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// The holder's rules for sending replies. They are stated for a
// connection, whatever serves it, and tested through the socket. Today a
// connection is served by its goroutine, which waits for a request in the
// runtime's netpoller, or for a short while in ppoll(2) on its socket
// while no other request is being served (proto.HotWait); a reply is sent
// through the netpoller under a write deadline:
//
//  1. Every reply, a dump's included, is sent under the request deadline:
//     it may wait RequestTimeout (to 9/8 of it) from when its request
//     arrived for room at the peer; then the connection is closed.
//  2. A reply that carries descriptors is sent only once the peer has read
//     every reply before it on the connection (SIOCOUTQ is 0), waiting
//     under the same deadline. Each descriptor in an unread message is "in
//     flight" and charged by the kernel to the sender's uid: past
//     RLIMIT_NOFILE of them, every sendmsg(2) of a descriptor by that uid
//     fails with ETOOMANYREFS (unix(7)), the holder's replies and its
//     copies to systemd's file descriptor store alike. So one connection
//     pins at most one reply's descriptors (one for a get or take, a page
//     of a dump), and MaxConnsPerUID bounds a uid's connections.
//  3. A reply whose descriptors the kernel still refuses (ETOOMANYREFS) is
//     answered with proto.CodeLimit instead, without them; the connection
//     stays usable. A reply that is not delivered is audited as such,
//     never as ok.
//  4. Once the server is handing off to an upgrade (Handoff), a reply is
//     sent only if it fits at the peer at once, and one with descriptors
//     only if the peer has read the one before: an upgrade waits for no
//     peer that does not read. (A plain Shutdown lets replies in flight go
//     out under rules 1 and 2, within its caller's grace period.)
//  5. An idle connection keeps no large buffer: list and dump pages are
//     borrowed from a pool for the length of one request.

// errUnread refuses a reply with descriptors whose peer has not read the
// previous reply within the request deadline.
var errUnread = proto.Errorf(proto.CodeLimit, "the previous reply was not read in time; a reply with a descriptor waits for it")

// errTooManyInFlight answers a request whose descriptor the kernel refused
// to put in flight.
var errTooManyInFlight = proto.Errorf(proto.CodeLimit,
	"cannot pass the descriptor now: the holder has too many descriptors in flight (ETOOMANYREFS, unix(7)); try again")

// undelivered is the audit's error for a reply that did not reach the peer.
type undelivered struct{ err error }

func (u *undelivered) Error() string { return "reply not delivered: " + u.err.Error() }
func (u *undelivered) Unwrap() error { return u.err }

// unreadPoll bounds the wait between two looks at SIOCOUTQ: the kernel
// wakes a writer when the peer's queue has room (unix_write_space), not
// when it is empty, so there is no event to wait for.
const unreadPoll = 5 * time.Millisecond

// armWrite sets the write deadline of the reply to the request that
// arrived at c.now (rule 1), moving it only once its slack is used up.
func (c *conn) armWrite() {
	t := c.s.limits.RequestTimeout
	if t <= 0 || c.now.Sub(c.writeArmed) <= t/deadlineSlack {
		return
	}
	c.writeArmed = c.now
	c.c.UnixConn().SetWriteDeadline(c.now.Add(t + t/deadlineSlack))
}

// send sends out with duplicates of fd or fds (nil: none) under the rules
// above. fds stay owned by the caller.
func (c *conn) send(out []byte, fd *sockfd.FD, fds []*sockfd.FD) error {
	if fd != nil {
		c.one[0] = fd
		fds = c.one[:]
		defer c.clearOne()
	}
	if c.s.handoff.Load() {
		if len(fds) > 0 {
			if n, err := c.c.Unsent(); err != nil || n > 0 {
				return cmp.Or[error](err, errUnread)
			}
		}
		return c.c.SendNoWait(out, fds) // rule 4
	}
	c.armWrite()
	if len(fds) > 0 {
		if err := c.waitRead(); err != nil {
			return err
		}
	}
	var err error
	if len(fds) == 1 {
		err = c.c.Send(out, fds[0])
	} else {
		err = c.c.SendFDs(out, fds)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && c.s.handoff.Load() {
		// Handoff woke a send blocked on a peer that does not read.
		return unix.EAGAIN
	}
	return err
}

func (c *conn) clearOne() { c.one[0] = nil }

// waitRead waits until the peer has read every reply sent on c (rule 2),
// until the request deadline, or until the server stops.
func (c *conn) waitRead() error {
	var deadline time.Time
	if t := c.s.limits.RequestTimeout; t > 0 {
		deadline = c.now.Add(t)
	}
	for wait := 50 * time.Microsecond; ; wait = min(2*wait, unreadPoll) {
		n, err := c.c.Unsent()
		if err != nil || n == 0 {
			return err
		}
		if c.s.handoff.Load() || !deadline.IsZero() && time.Now().After(deadline) {
			return errUnread
		}
		time.Sleep(wait)
	}
}

// pass sends out, the encoding of a reply that carries fd or fds, and
// audits the request (op on name) by what became of it: delivered says
// whether the descriptors reached the peer, ok whether the connection is
// still usable (rule 3).
func (c *conn) pass(op proto.Op, name string, out []byte, fd *sockfd.FD, fds []*sockfd.FD) (delivered, ok bool) {
	err := c.send(out, fd, fds)
	switch {
	case err == nil:
		c.audit(op, name, nil)
		return true, true
	case errors.Is(err, unix.ETOOMANYREFS):
		// Nothing was sent: answer without the descriptor.
		c.audit(op, name, errTooManyInFlight)
		return false, c.replyErr(op, errTooManyInFlight)
	}
	c.sendFailed(op, err)
	c.audit(op, name, &undelivered{err})
	return false, false
}

// sendFailed logs why a reply could not be sent; the connection is then
// closed.
func (c *conn) sendFailed(op proto.Op, err error) {
	switch {
	case c.s.handoff.Load() && (errors.Is(err, unix.EAGAIN) || err == errUnread):
		c.s.log.Info("stopping: a reply did not fit at a client that does not read; closing the connection",
			c.peerFields(zap.String("op", op.String()))...)
	case errors.Is(err, os.ErrDeadlineExceeded) || err == errUnread:
		c.s.log.Warn("reply timed out: the client does not read; closing the connection",
			c.peerFields(zap.String("op", op.String()), zap.String("result", "request timeout"),
				zap.Duration("request_timeout", c.s.limits.RequestTimeout))...)
	case !proto.IsClosed(err):
		c.s.log.Debug("cannot send reply", c.peerFields(zap.String("op", op.String()), zap.Error(err))...)
	}
}

// pageBuf is the buffers of one list or dump reply (rule 5).
type pageBuf struct {
	out     []byte
	entries []proto.Entry
}

var pageBufs = sync.Pool{New: func() any { return new(pageBuf) }}

// getPage borrows page buffers; putPage gives them back, dropping the
// references to names they hold.
func getPage() *pageBuf { return pageBufs.Get().(*pageBuf) }

func putPage(b *pageBuf) {
	clear(b.entries)
	b.entries, b.out = b.entries[:0], b.out[:0]
	pageBufs.Put(b)
}

// protoError returns err as the *proto.Error to reply with: itself, or its
// sentinel's code with its message.
func protoError(err error) *proto.Error {
	var pe *proto.Error
	if !errors.As(err, &pe) {
		pe = &proto.Error{Code: proto.CodeOf(err), Message: err.Error()}
	}
	return pe
}

// replyErr sends err, an *proto.Error or an error wrapping a sentinel, as an
// error reply.
func (c *conn) replyErr(op proto.Op, err error) bool {
	pe := protoError(err)
	return c.reply(&proto.Reply{Op: op, Code: pe.Code, Message: pe.Message})
}

// reply encodes and sends r, which carries no descriptor, and reports
// whether it was sent. Replies with descriptors go through pass.
func (c *conn) reply(r *proto.Reply) bool { return c.replyIn(&c.out, r) }

// replyIn is reply encoding into the buffer *buf, which it keeps.
func (c *conn) replyIn(buf *[]byte, r *proto.Reply) bool {
	out, ok := c.encode((*buf)[:0], r)
	if !ok {
		return false
	}
	*buf = out
	if err := c.send(out, nil, nil); err != nil {
		c.sendFailed(r.Op, err)
		return false
	}
	return true
}

// encode appends the encoding of r to dst; a failure is logged (the reply
// cannot be sent, and the connection is closed).
func (c *conn) encode(dst []byte, r *proto.Reply) ([]byte, bool) {
	out, err := proto.AppendReply(dst, r)
	if err != nil {
		c.s.log.Error("cannot encode reply", c.peerFields(zap.String("op", r.Op.String()), zap.Error(err))...)
		return dst, false
	}
	return out, true
}
