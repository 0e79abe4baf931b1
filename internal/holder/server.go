package holder

// This file is the server's life: options, Serve's accept loop with its
// admission limits (MaxConns, MaxConnsPerUID) and refusals, and the ways
// it stops (Shutdown, Handoff, Close). A connection's loop is conn.go.

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
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
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
// waits for the next in the runtime's netpoller or, for up to
// proto.HotWindow after its last reply while no other request is being
// served, hot in ppoll(2) on its socket (proto.HotWait).
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
	fields := appendPeer([]zap.Field{zap.String("result", proto.CodeLimit.String()), zap.Int("max_conns", s.limits.MaxConns)}, &p)
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
