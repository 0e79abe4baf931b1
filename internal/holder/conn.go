package holder

// This file is the connection loop: a served connection's state, how it
// waits for each request (netpoller or hot wait, deadlines) and how a
// request is checked and dispatched to its op (ops.go).

import (
	"errors"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// conn is the state of one served connection.
type conn struct {
	s    *Server
	c    *proto.Conn
	peer Peer
	// privileged: root or the holder's uid, allowed everything without
	// asking the Access.
	privileged bool
	in         []byte        // the request buffer
	out        []byte        // the reply buffer for all but list and dump pages, reused
	fds        []*sockfd.FD  // descriptors received with a request, reused
	one        [1]*sockfd.FD // send's slice of one descriptor
	name       string        // the last name requested: decoding it again allocates nothing

	// fields holds the audit line's fields: a slice of it passed to zap
	// does not escape, so logging a request allocates no field slice. Nine
	// is the most a line has (audit: op, name, result, error, rule, the
	// three peer fields, suppressed); with fewer, a full line's append would
	// copy it to a new slice on the heap.
	fields [9]zap.Field

	// op and code are the last request audited, until observe reports it.
	op      proto.Op
	code    proto.Code
	audited bool

	// now is when the last request arrived (or the connection was
	// accepted); readArmed and writeArmed when the read (idle) and write
	// (request) deadlines were last set.
	now, readArmed, writeArmed time.Time
}

// deadlineSlack: a deadline is set 1/deadlineSlack of its timeout further
// than needed, and moved only once that slack is used up, rather than at
// every request: setting a deadline updates a runtime timer on every
// request otherwise. So a connection is closed after between IdleTimeout
// and 9/8 of it without a request, and a reply may block between
// RequestTimeout and 9/8 of it.
const deadlineSlack = 8

func (s *Server) serveConn(pc *proto.Conn, cred *unix.Ucred) {
	defer s.untrack(pc)
	// Every request but a load fits in proto.MaxRequestSize; a load (up to
	// proto.MaxLoadRequestSize) is received into a buffer borrowed only
	// while it is served (proto.Conn.RecvLarge).
	c := &conn{s: s, c: pc, in: make([]byte, proto.MaxRequestSize), out: make([]byte, 0, 512), now: time.Now()}
	p, err := peerOf(pc, cred)
	if err != nil {
		s.log.Warn("cannot identify peer; closing", zap.Error(err))
		return
	}
	c.peer = p
	c.privileged = p.UID == 0 || p.UID == s.holderUID
	idle := s.limits.IdleTimeout
	for {
		if idle > 0 && c.now.Sub(c.readArmed) > idle/deadlineSlack {
			c.readArmed = c.now
			pc.SetReadDeadline(c.now.Add(idle + idle/deadlineSlack))
			// Shutdown sets the flag, then an expired deadline: either this
			// sees the flag, or Shutdown's deadline comes after this one
			// (and is not overwritten until the next re-arm, which checks
			// the flag again).
			if s.shutdown.Load() {
				return
			}
		}
		msg, fds, release, err := pc.RecvLarge(c.in, c.fds[:0])
		c.fds = fds
		// One clock reading per request serves both deadlines: they move
		// only by eighths of their timeouts, so microseconds do not matter.
		c.now = time.Now()
		if err != nil {
			var pe *proto.Error
			if !errors.As(err, &pe) {
				// The connection ended (EOF, shutdown, idle) or failed.
				switch {
				case s.shutdown.Load() || proto.IsClosed(err):
				case errors.Is(err, os.ErrDeadlineExceeded):
					s.log.Info("closing idle connection", c.peerFields(zap.String("result", "idle timeout"),
						zap.Duration("idle_timeout", idle))...)
				default:
					s.log.Debug("connection failed", c.peerFields(zap.Error(err))...)
				}
				return
			}
			// A message arrived that cannot be served; Recv closed its
			// descriptors. Answer it and carry on with the next one.
			s.hot.Begin()
			op := proto.PeekOp(msg)
			release()
			c.audit(op, "", err)
			ok := c.replyErr(op, pe)
			c.observe()
			s.hot.End()
			if !ok {
				return
			}
			continue
		}
		// While a request is served, no other connection waits hot
		// (proto.HotWait): the netpoller serves concurrent connections.
		s.hot.Begin()
		ok := c.handle(msg, c.fds)
		release()
		clear(c.fds) // handle owns them now
		c.observe()
		s.hot.End()
		if !ok {
			return
		}
	}
}

// handle serves one request and reports whether the connection is still
// usable. It takes ownership of fds.
func (c *conn) handle(msg []byte, fds []*sockfd.FD) bool {
	req, err := proto.DecodeRequestReuse(msg, c.name)
	c.name = req.Name
	// The checks of the message as a whole come first, in the order they
	// had when only one descriptor was received (proto.Conn.Recv): size,
	// then the number of descriptors, which only a load may exceed.
	// A load whose batch is too large (254 entries, say) is told so, not
	// the size limit of other requests.
	load := req.Op == proto.OpLoad && (err == nil || proto.CodeOf(err) == proto.CodeTooLarge)
	switch {
	case len(msg) > proto.MaxRequestSize && !load:
		err = proto.Errorf(proto.CodeTooLarge, "message exceeds %d bytes", proto.MaxRequestSize)
	case len(fds) > 1 && !load:
		err = proto.Errorf(proto.CodeBadDescriptors, "%d descriptors attached, at most one is accepted", len(fds))
	}
	var fd *sockfd.FD
	switch {
	case err != nil, load:
	case len(fds) == 1 && req.Op != proto.OpStore:
		err = proto.Errorf(proto.CodeBadDescriptors, "a descriptor was attached; only store carries one (and load, one per entry)")
	case len(fds) == 1:
		fd = fds[0]
	}
	if err == nil && req.Op != proto.OpList && req.Op != proto.OpDump && req.Op != proto.OpLoad {
		err = proto.ValidateName(req.Name)
	}
	if err != nil {
		sockfd.CloseAll(fds)
		op := req.Op
		if op == 0 {
			op = proto.PeekOp(msg)
		}
		c.audit(op, req.Name, err)
		return c.replyErr(op, err)
	}
	// Ask about the op and name before looking anything up, so that a
	// refused peer learns nothing about which names are held.
	name := req.Name
	if req.Op == proto.OpList || req.Op == proto.OpDump || req.Op == proto.OpLoad {
		name = "" // may the peer list (dump, load) at all; each entry is asked about later
	}
	if err := c.check(req.Op, name, nil); err != nil {
		sockfd.CloseAll(fds)
		c.audit(req.Op, name, err)
		return c.replyErr(req.Op, err)
	}
	switch req.Op {
	case proto.OpLoad:
		return c.load(&req, fds)
	case proto.OpDump:
		return c.dump(&req)
	case proto.OpStore:
		return c.store(&req, fd)
	case proto.OpGet:
		return c.get(&req)
	case proto.OpTake:
		return c.take(&req)
	case proto.OpDelete:
		return c.delete(&req)
	case proto.OpList:
		return c.list(&req)
	}
	// Unreachable: DecodeRequest accepts only the ops above.
	return c.replyErr(req.Op, proto.Errorf(proto.CodeUnknownOp, "unknown operation %d", req.Op))
}
