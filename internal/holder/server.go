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

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("holder: server closed")

// ServerOptions configures a Server. The zero value is valid.
type ServerOptions struct {
	// Logger receives one audit line per request (fields op, name,
	// peer_uid, peer_gid, peer_pid, result, err) and the server's own
	// events. Nil: no logging.
	Logger *zap.Logger
}

// Server serves a Registry over AF_UNIX SOCK_SEQPACKET connections. Each
// connection is served by its own goroutine, one request at a time.
type Server struct {
	reg *Registry
	log *zap.Logger

	mu        sync.Mutex
	listeners map[*net.UnixListener]struct{}
	conns     map[*proto.Conn]struct{}
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
	return &Server{
		reg:       reg,
		log:       log,
		listeners: make(map[*net.UnixListener]struct{}),
		conns:     make(map[*proto.Conn]struct{}),
	}
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
		if !s.track(c) {
			c.Close()
			return ErrServerClosed
		}
		go s.serveConn(c)
	}
}

// track registers a new connection unless the server is shutting down.
func (s *Server) track(c *proto.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.active.Add(1)
	return true
}

func (s *Server) untrack(c *proto.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
	s.active.Done()
}

// Shutdown stops accepting connections, lets every request in flight
// finish and its reply go out, then closes the connections. If ctx is done
// first, it closes the rest at once and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginShutdown()
	// Wake connections waiting for their next request; one that is serving a
	// request finishes it and then finds the expired read deadline.
	s.mu.Lock()
	for c := range s.conns {
		c.SetReadDeadline(time.Unix(1, 0))
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

// peer is the identity of a connected client.
type peer struct {
	Owner
	known bool
}

// conn is the state of one served connection.
type conn struct {
	s    *Server
	c    *proto.Conn
	peer peer
	in   []byte        // the request buffer
	out  []byte        // the reply buffer, reused
	page []proto.Entry // list page buffer, reused
	name string        // the last name requested: decoding it again allocates nothing
	// fields holds the audit line's fields: a slice of it passed to zap
	// does not escape, so logging a request allocates no field slice.
	fields [7]zap.Field
}

func (s *Server) serveConn(pc *proto.Conn) {
	defer s.untrack(pc)
	c := &conn{s: s, c: pc, in: make([]byte, proto.MaxRequestSize), out: make([]byte, 0, 512)}
	if cred, err := pc.PeerCred(); err == nil {
		c.peer = peer{Owner: Owner{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, known: true}
	} else {
		s.log.Warn("cannot identify peer; closing", zap.Error(err))
		return
	}
	for {
		n, fd, err := pc.Recv(c.in)
		if err != nil {
			var pe *proto.Error
			if !errors.As(err, &pe) {
				// The connection ended (EOF, shutdown) or failed.
				if !proto.IsClosed(err) && !errors.Is(err, os.ErrDeadlineExceeded) && !s.shutdown.Load() {
					s.log.Debug("connection failed", c.peerFields(zap.Error(err))...)
				}
				return
			}
			// A message arrived that cannot be served; Recv closed its
			// descriptors. Answer it and carry on with the next one.
			op := proto.PeekOp(c.in[:n])
			c.audit(op, "", err)
			if !c.reply(&proto.Reply{Op: op, Code: pe.Code, Message: pe.Message}, nil) {
				return
			}
			continue
		}
		if !c.handle(c.in[:n], fd) {
			return
		}
	}
}

// handle serves one request and reports whether the connection is still
// usable. It takes ownership of fd.
func (c *conn) handle(msg []byte, fd *sockfd.FD) bool {
	req, err := proto.DecodeRequestReuse(msg, c.name)
	c.name = req.Name
	if err == nil && fd != nil && req.Op != proto.OpStore {
		err = proto.Errorf(proto.CodeBadDescriptors, "a descriptor was attached; only store carries one")
	}
	if err == nil && req.Op != proto.OpList {
		err = proto.ValidateName(req.Name)
	}
	if err != nil {
		if fd != nil {
			fd.Close()
		}
		op := req.Op
		if op == 0 {
			op = proto.PeekOp(msg)
		}
		c.audit(op, req.Name, err)
		return c.replyErr(op, err)
	}
	switch req.Op {
	case proto.OpStore:
		return c.store(&req, fd)
	case proto.OpGet:
		return c.get(&req)
	case proto.OpTake:
		return c.take(&req)
	case proto.OpDelete:
		err := c.s.reg.Delete(req.Name)
		c.audit(req.Op, req.Name, err)
		if err != nil {
			return c.replyErr(req.Op, err)
		}
		return c.reply(&proto.Reply{Op: req.Op}, nil)
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
	info, err := sockfd.Inspect(fd)
	if err != nil {
		fd.Close()
		code := proto.CodeInternal
		if errors.Is(err, sockfd.ErrNotSocket) {
			code = proto.CodeNotSocket
		}
		err = &proto.Error{Code: code, Message: fmt.Sprintf("%v; only sockets are held", err)}
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	e, err := c.s.reg.Store(req.Name, fd, info, c.peer.Owner, req.TTL, req.Flags&proto.FlagReplace != 0)
	c.audit(req.Op, req.Name, err)
	if err != nil {
		return c.replyErr(req.Op, err)
	}
	return c.reply(&proto.Reply{Op: req.Op, Entry: e}, nil)
}

func (c *conn) get(req *proto.Request) bool {
	h, err := c.s.reg.Get(req.Name)
	c.audit(req.Op, req.Name, err)
	if err != nil {
		return c.replyErr(req.Op, err)
	}
	ok := c.reply(&proto.Reply{Op: req.Op, Entry: *h.Entry()}, h.FD())
	h.Release()
	return ok
}

func (c *conn) take(req *proto.Request) bool {
	h, err := c.s.reg.Take(req.Name)
	if err != nil {
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	if !c.reply(&proto.Reply{Op: req.Op, Entry: *h.Entry()}, h.FD()) {
		// The descriptor did not reach the peer: keep holding it.
		restored := c.s.reg.Restore(h)
		c.s.log.Warn("take not delivered", c.peerFields(zap.String("op", "take"),
			zap.String("name", req.Name), zap.Bool("restored", restored))...)
		return false
	}
	c.audit(req.Op, req.Name, nil)
	h.Release()
	return true
}

func (c *conn) list(req *proto.Request) bool {
	page, more := c.s.reg.List(c.page[:0], req.Name)
	c.page = page
	c.audit(req.Op, "", nil)
	r := proto.Reply{Op: req.Op, Entries: page}
	if more {
		r.Flags = proto.FlagMore
	}
	ok := c.reply(&r, nil)
	clear(c.page) // drop references to names until the next page
	return ok
}

// replyErr sends err, an *proto.Error or an error wrapping a sentinel, as an
// error reply.
func (c *conn) replyErr(op proto.Op, err error) bool {
	var pe *proto.Error
	if !errors.As(err, &pe) {
		pe = &proto.Error{Code: proto.CodeOf(err), Message: err.Error()}
	}
	return c.reply(&proto.Reply{Op: op, Code: pe.Code, Message: pe.Message}, nil)
}

// reply encodes and sends r, with a duplicate of fd if not nil, and reports
// whether it was sent.
func (c *conn) reply(r *proto.Reply, fd *sockfd.FD) bool {
	out, err := proto.AppendReply(c.out[:0], r)
	if err != nil {
		c.s.log.Error("cannot encode reply", c.peerFields(zap.String("op", r.Op.String()), zap.Error(err))...)
		return false
	}
	c.out = out
	if err := c.c.Send(out, fd); err != nil {
		if !proto.IsClosed(err) {
			c.s.log.Debug("cannot send reply", c.peerFields(zap.String("op", r.Op.String()), zap.Error(err))...)
		}
		return false
	}
	return true
}

// audit writes the audit line of one request.
func (c *conn) audit(op proto.Op, name string, err error) {
	level := zapcore.InfoLevel
	if err != nil {
		level = zapcore.WarnLevel
	}
	ce := c.s.log.Check(level, "request")
	if ce == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = proto.CodeOf(err).String()
	}
	fields := append(c.fields[:0], zap.String("op", op.String()))
	if name != "" {
		fields = append(fields, zap.String("name", name))
	}
	fields = append(fields, zap.String("result", result))
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	fields = append(fields,
		zap.Uint32("peer_uid", c.peer.UID),
		zap.Uint32("peer_gid", c.peer.GID),
		zap.Int32("peer_pid", c.peer.PID))
	ce.Write(fields...)
	clear(fields) // let go of err until the next line
}

func (c *conn) peerFields(fields ...zap.Field) []zap.Field {
	return append(fields,
		zap.Uint32("peer_uid", c.peer.UID),
		zap.Uint32("peer_gid", c.peer.GID),
		zap.Int32("peer_pid", c.peer.PID))
}
