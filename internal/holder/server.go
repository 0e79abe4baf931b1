package holder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("holder: server closed")

// ServerOptions configures a Server. The zero value is valid.
type ServerOptions struct {
	// Logger receives one audit line per request (fields op, name,
	// peer_uid, peer_gid, peer_pid, result, err; rule on a denial) and the
	// server's own events. Nil: no logging.
	Logger *zap.Logger

	// Access decides what each peer may do. Nil: DefaultAccess for the
	// holder's own uid (root and that uid may do everything, nobody else
	// anything). Root and the holder's uid are never asked about: they may
	// always do everything. SetAccess replaces it while serving.
	Access Access

	// Limits bounds what peers can make the holder spend; zero fields take
	// their defaults.
	Limits Limits

	// Requests, if set, is told of every request and connection (see
	// RequestObserver). Nil: none.
	Requests RequestObserver
}

// accessBox lets an interface value live in an atomic.Pointer.
type accessBox struct{ Access }

// Server serves a Registry over AF_UNIX SOCK_SEQPACKET connections. Each
// connection is served by its own goroutine, one request at a time, which
// waits for the next in the runtime's netpoller or, while the connection
// is busy, hot in ppoll(2) (proto.HotWait).
type Server struct {
	reg       *Registry
	log       *zap.Logger
	limits    Limits
	holderUID uint32
	access    atomic.Pointer[accessBox]
	refusing  atomic.Int32 // connections beyond MaxConns being answered
	handoff   atomic.Bool  // stopping for an upgrade: wait for no peer (Handoff)
	refusals  *auditLimiter
	reqs      RequestObserver
	hot       *proto.HotWait // how connections wait for a request (serveConn)

	mu        sync.Mutex
	listeners map[*net.UnixListener]struct{}
	conns     map[*proto.Conn]tracked
	served    int            // connections served, not counting those refused
	servedBy  map[uint32]int // connections served per unprivileged uid
	shutdown  atomic.Bool
	active    sync.WaitGroup // connection goroutines
}

// NewServer returns a server for reg. The server does not own reg: closing
// the server leaves every entry held.
func NewServer(reg *Registry, opts ServerOptions) *Server {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		reg:       reg,
		log:       log,
		limits:    opts.Limits.WithDefaults(),
		reqs:      opts.Requests,
		holderUID: uint32(os.Getuid()),
		listeners: make(map[*net.UnixListener]struct{}),
		conns:     make(map[*proto.Conn]tracked),
		servedBy:  make(map[uint32]int),
		refusals:  newAuditLimiter(time.Now),
		hot:       proto.NewHotWait(proto.HotWindow, 0),
	}
	s.SetAccess(opts.Access)
	return s
}

// SetAccess replaces the access decisions for every request from now on,
// atomically: a request is decided wholly by the old or wholly by the new.
// Nil restores DefaultAccess.
func (s *Server) SetAccess(a Access) {
	if a == nil {
		a = DefaultAccess{HolderUID: s.holderUID}
	}
	s.access.Store(&accessBox{a})
}

// Serve accepts connections on ln and serves them until Shutdown or Close
// is called, or ctx is done (which closes the server as Close does). It
// takes ownership of ln and always returns a non-nil error: ErrServerClosed
// after Shutdown or Close.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()

	var backoff time.Duration
	for {
		uc, err := ln.AcceptUnix()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors (EMFILE, ENFILE) or another passing
			// failure: wait rather than spin, and keep serving the
			// connections already open.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; backing off", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		c := proto.NewConn(uc)
		c.SetHotWait(s.hot)
		cred, err := c.PeerCred()
		if err != nil {
			s.log.Warn("cannot identify peer; closing", zap.Error(err))
			c.Close()
			continue
		}
		why := s.track(c, cred.Uid)
		if why != trackClosed && s.reqs != nil {
			s.reqs.ConnOpened()
		}
		switch why {
		case trackClosed:
			c.Close()
			return ErrServerClosed
		case trackServe:
			go s.serveConn(c, cred)
		default:
			go s.refuse(c, why, cred)
		}
	}
}

const (
	trackServe   = iota // serve the connection
	trackFull           // over MaxConns: refuse it
	trackFullUID        // over MaxConnsPerUID: refuse it
	trackClosed         // shutting down
)

// tracked is what the server knows of an open connection.
type tracked struct {
	served bool   // served, not being refused
	uid    uint32 // the peer's uid
	perUID bool   // counted in servedBy
}

// track registers a new connection of a peer of uid unless the server is
// shutting down, and says whether to serve it.
func (s *Server) track(c *proto.Conn, uid uint32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return trackClosed
	}
	t := tracked{uid: uid, perUID: uid != 0 && uid != s.holderUID && s.limits.MaxConnsPerUID > 0}
	why := trackServe
	switch {
	case s.limits.MaxConns >= 0 && s.served >= s.limits.MaxConns:
		why = trackFull
	case t.perUID && s.servedBy[uid] >= s.limits.MaxConnsPerUID:
		why = trackFullUID
	}
	t.served = why == trackServe
	t.perUID = t.perUID && t.served
	s.conns[c] = t
	if t.served {
		s.served++
	}
	if t.perUID {
		s.servedBy[uid]++
	}
	s.active.Add(1)
	return why
}

func (s *Server) untrack(c *proto.Conn) {
	s.mu.Lock()
	t := s.conns[c]
	if t.served {
		s.served--
	}
	if t.perUID {
		if s.servedBy[t.uid]--; s.servedBy[t.uid] <= 0 {
			delete(s.servedBy, t.uid)
		}
	}
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
	if s.reqs != nil {
		s.reqs.ConnClosed()
	}
	s.active.Done()
}

// refuse answers a connection beyond MaxConns or MaxConnsPerUID (why): the
// first request it sends within refuseWait gets proto.CodeLimit, then the
// connection is closed. When many are refused at once, the rest are closed
// without an answer, so that a flood costs no more than a bounded number of
// goroutines.
func (s *Server) refuse(pc *proto.Conn, why int, cred *unix.Ucred) {
	defer s.untrack(pc)
	p, _ := peerOf(pc, cred)
	msg := fmt.Sprintf("too many connections: the holder serves at most %d at once", s.limits.MaxConns)
	fields := []zap.Field{zap.String("result", proto.CodeLimit.String()), zap.Int("max_conns", s.limits.MaxConns),
		zap.Uint32("peer_uid", p.UID), zap.Uint32("peer_gid", p.GID), zap.Int32("peer_pid", p.PID)}
	if why == trackFullUID {
		msg = fmt.Sprintf("too many connections from uid %d: the holder serves at most %d per uid at once", p.UID, s.limits.MaxConnsPerUID)
		fields[1] = zap.Int("max_conns_per_uid", s.limits.MaxConnsPerUID)
	}
	if s.refusing.Add(1) > maxRefusing {
		s.refusing.Add(-1)
		s.log.Warn("connection refused: too many connections; closed without an answer", fields...)
		return
	}
	defer s.refusing.Add(-1)
	s.log.Warn("connection refused: too many connections", fields...)
	pc.SetDeadline(time.Now().Add(refuseWait))
	in := make([]byte, proto.MaxRequestSize)
	n, fd, err := pc.Recv(in)
	start := time.Now()
	if fd != nil {
		fd.Close()
	}
	var pe *proto.Error
	if err != nil && !errors.As(err, &pe) {
		return
	}
	op := proto.PeekOp(in[:n])
	out, err := proto.AppendReply(nil, &proto.Reply{Op: op, Code: proto.CodeLimit, Message: msg})
	if err == nil {
		pc.Send(out, nil)
	}
	s.observeRequest(op, proto.CodeLimit, start)
}

// Shutdown stops accepting connections, lets every request in flight
// finish and its reply go out, then closes the connections. If ctx is done
// first, it closes the rest at once and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginShutdown()
	// Wake connections waiting for their next request; one that is serving a
	// request finishes it and then finds the expired read deadline. For a
	// hand-off, a send blocked on a peer that does not read is woken too,
	// and fails: from now on a reply goes out only if it fits at once
	// (deliver.go, rule 4).
	s.mu.Lock()
	for c := range s.conns {
		if s.handoff.Load() {
			c.SetDeadline(time.Unix(1, 0))
		} else {
			c.SetReadDeadline(time.Unix(1, 0))
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Handoff is Shutdown for an upgrade, which holds every client (they queue
// at the control socket) until it is done: the requests in flight finish,
// but their replies go out only if they fit at the peer at once, so it
// waits for no peer that does not read.
func (s *Server) Handoff(ctx context.Context) error {
	s.handoff.Store(true)
	return s.Shutdown(ctx)
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.beginShutdown()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) beginShutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown.Store(true)
	for ln := range s.listeners {
		ln.Close()
		delete(s.listeners, ln)
	}
}

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
	// does not escape, so logging a request allocates no field slice.
	fields [8]zap.Field

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
			ok := c.reply(&proto.Reply{Op: op, Code: pe.Code, Message: pe.Message})
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
		err := c.s.reg.Delete(req.Name, c.ownerGuard(req.Op))
		c.audit(req.Op, req.Name, err)
		if err != nil {
			return c.replyErr(req.Op, err)
		}
		return c.reply(&proto.Reply{Op: req.Op})
	case proto.OpList:
		return c.list(&req)
	}
	// Unreachable: DecodeRequest accepts only the ops above.
	return c.replyErr(req.Op, proto.Errorf(proto.CodeUnknownOp, "unknown operation %d", req.Op))
}

func (c *conn) store(req *proto.Request, fd *sockfd.FD) bool {
	if fd == nil {
		err := proto.Errorf(proto.CodeBadDescriptors, "no descriptor attached; store carries exactly one")
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	info, err := inspect(fd)
	if err == nil {
		err = c.room(fd)
	}
	if err != nil {
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	e, err := c.s.reg.Store(req.Name, fd, StoreOptions{Info: info, Owner: c.peer.Owner(), TTL: req.TTL,
		Replace: req.Flags&proto.FlagReplace != 0, Guard: c.storeGuard(req.Op, c.peer.UID)})
	c.audit(req.Op, req.Name, err)
	if err != nil {
		return c.replyErr(req.Op, err)
	}
	return c.reply(&proto.Reply{Op: req.Op, Entry: e})
}

func (c *conn) get(req *proto.Request) bool {
	h, err := c.s.reg.Get(req.Name)
	if err != nil {
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	_, ok := c.passEntry(req, h)
	h.Release()
	return ok
}

func (c *conn) take(req *proto.Request) bool {
	h, err := c.s.reg.Take(req.Name, c.ownerGuard(req.Op))
	if err != nil {
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	delivered, ok := c.passEntry(req, h)
	if !delivered {
		// The descriptor did not reach the peer: keep holding it.
		restored := c.s.reg.Restore(h)
		c.s.log.Warn("take not delivered", c.peerFields(zap.String("op", "take"),
			zap.String("name", req.Name), zap.Bool("restored", restored))...)
		return ok
	}
	h.Release()
	return true
}

// passEntry encodes and passes the reply to a get or take of h (see pass);
// a reply that cannot be encoded is neither delivered nor ok.
func (c *conn) passEntry(req *proto.Request, h Handle) (delivered, ok bool) {
	out, encoded := c.encode(c.out[:0], &proto.Reply{Op: req.Op, Entry: *h.Entry()})
	if !encoded {
		return false, false
	}
	c.out = out
	return c.pass(req.Op, req.Name, out, h.FD(), nil)
}

func (c *conn) list(req *proto.Request) bool {
	var visible func(*proto.Entry) bool
	var prefixes []string
	if !c.privileged {
		// list shows the entries the peer may both list and get.
		acc := c.s.access.Load().Access
		if sc, ok := acc.(ListScope); ok {
			if ps, all := sc.ListPrefixes(&c.peer); !all {
				prefixes = ps
				if prefixes == nil {
					prefixes = []string{} // none: nothing to visit
				}
			}
		}
		visible = func(e *proto.Entry) bool {
			owner := Owner{UID: e.UID, GID: e.GID, PID: e.PID}
			return acc.Allow(AccessRequest{Peer: &c.peer, Op: proto.OpList, Name: e.Name, Owner: &owner}).Allowed &&
				acc.Allow(AccessRequest{Peer: &c.peer, Op: proto.OpGet, Name: e.Name, Owner: &owner}).Allowed
		}
	}
	b := getPage()
	defer putPage(b)
	page, more := c.s.reg.List(b.entries[:0], ListOptions{After: req.Name, Prefixes: prefixes, Visible: visible})
	b.entries = page
	c.audit(req.Op, "", nil)
	r := proto.Reply{Op: req.Op, Entries: page}
	if more {
		r.Flags = proto.FlagMore
	}
	return c.replyIn(&b.out, &r)
}

// check asks the Access whether the peer may do op on name (owner: see
// AccessRequest) and returns the error to reply with if not.
func (c *conn) check(op proto.Op, name string, owner *Owner) error {
	if c.privileged {
		return nil
	}
	d := c.s.access.Load().Allow(AccessRequest{Peer: &c.peer, Op: op, Name: name, Owner: owner})
	if d.Allowed {
		return nil
	}
	return denied(&c.peer, op, d)
}

// ownerGuard returns the registry guard that checks op against the owner
// of the entry it acts on, under the registry's lock.
func (c *conn) ownerGuard(op proto.Op) EntryGuard {
	if c.privileged {
		return nil
	}
	return func(e *proto.Entry) error {
		return c.check(op, e.Name, &Owner{UID: e.UID, GID: e.GID, PID: e.PID})
	}
}

// inspect asks the kernel what fd is, for a store or a load. On error it
// closes fd and returns the error to reply with: only sockets are held.
func inspect(fd *sockfd.FD) (sockfd.Info, error) {
	info, err := sockfd.Inspect(fd)
	if err != nil {
		fd.Close()
		code := proto.CodeInternal
		if errors.Is(err, sockfd.ErrNotSocket) {
			code = proto.CodeNotSocket
		}
		return info, &proto.Error{Code: code, Message: fmt.Sprintf("%v; only sockets are held", err)}
	}
	return info, nil
}

// room makes sure the holder has room for one more descriptor; if not, it
// closes fd and returns the error to reply with.
func (c *conn) room(fd *sockfd.FD) error {
	if err := c.s.fdRoom(fd); err != nil {
		fd.Close()
		return err
	}
	return nil
}

// storeGuard vets a store or load (op) of an entry owned by uid under the
// registry's lock: a replace needs the right to act on the old entry's
// owner, and the entry limits must hold for uid.
func (c *conn) storeGuard(op proto.Op, uid uint32) StoreGuard {
	og := c.ownerGuard(op)
	return func(old *proto.Entry, after Counts) error {
		if old != nil && og != nil {
			if err := og(old); err != nil {
				return err
			}
		}
		return c.s.storeLimits(uid, c.privileged, old == nil, after)
	}
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

// auditLevel is info for a request served or refused in the ordinary course
// of things (a get-or-create's first get finds nothing; a store without
// replace finds the name held), and warn for anything an operator should
// look at: denials, malformed input, limits, holder failures.
func auditLevel(err error) zapcore.Level {
	switch proto.CodeOf(err) {
	case proto.CodeOK, proto.CodeNotFound, proto.CodeExists:
		return zapcore.InfoLevel
	}
	return zapcore.WarnLevel
}

// audit writes the audit line of one request; the refusals of an
// unprivileged peer are rate-limited per uid (auditlimit.go).
func (c *conn) audit(op proto.Op, name string, err error) {
	if c.s.reqs != nil {
		c.op, c.code, c.audited = op, proto.CodeOf(err), true
	}
	level := auditLevel(err)
	ce := c.s.log.Check(level, "request")
	if ce == nil {
		return
	}
	suppressed := 0
	if err != nil && !c.privileged {
		var ok bool
		if ok, suppressed = c.s.refusals.allow(c.peer.UID); !ok {
			return
		}
	}
	result := "ok"
	if err != nil {
		result = resultOf(err)
	}
	fields := append(c.fields[:0], zap.String("op", op.String()))
	if name != "" {
		fields = append(fields, zap.String("name", name))
	}
	fields = append(fields, zap.String("result", result))
	if err != nil {
		fields = append(fields, zap.Error(err))
		var de *deniedError
		if errors.As(err, &de) {
			fields = append(fields, zap.String("rule", de.rule))
		}
	}
	fields = c.peerFields(fields...) // appends in place: c.fields has room
	if suppressed > 0 {
		fields = append(fields, zap.Int("suppressed", suppressed))
	}
	ce.Write(fields...)
	clear(fields) // let go of err until the next line
}

// resultOf is the audit's result for a request that failed with err.
func resultOf(err error) string {
	var u *undelivered
	if errors.As(err, &u) {
		return "not delivered"
	}
	return proto.CodeOf(err).String()
}

func (c *conn) peerFields(fields ...zap.Field) []zap.Field {
	return append(fields,
		zap.Uint32("peer_uid", c.peer.UID),
		zap.Uint32("peer_gid", c.peer.GID),
		zap.Int32("peer_pid", c.peer.PID))
}
