package holder

import (
	"time"

	"github.com/fdholder/fdholder/internal/proto"
)

// RequestObserver sees the work of a Server, for metrics
// (ServerOptions.Requests; internal/metrics implements it).
//
// Its methods run on the connection's goroutine, on every request, so they
// must be cheap, must not block, and should not allocate: the get path
// allocates nothing, and an observer must keep it so.
type RequestObserver interface {
	// Request is called once per request answered: its op (as the client
	// sent it, possibly unknown), the reply's code, and the time from the
	// request's arrival until its reply was sent (or failed to send). A
	// connection beyond MaxConns that is answered reports its one request
	// with proto.CodeLimit.
	Request(op proto.Op, code proto.Code, took time.Duration)

	// ConnOpened and ConnClosed are called once each per accepted
	// connection, those refused beyond MaxConns included.
	ConnOpened()
	ConnClosed()
}

// observeRequest is the one place that reports a request to the observer.
func (s *Server) observeRequest(op proto.Op, code proto.Code, since time.Time) {
	if s.reqs != nil {
		s.reqs.Request(op, code, time.Since(since))
	}
}

// observe reports the request the connection last audited, once.
func (c *conn) observe() {
	if c.audited {
		c.audited = false
		c.s.observeRequest(c.op, c.code, c.now)
	}
}
