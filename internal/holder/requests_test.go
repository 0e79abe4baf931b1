package holder_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// requestRecorder is a RequestObserver that passes each request on a
// channel, and counts connections.
type requestRecorder struct {
	requests       chan string
	opened, closed atomic.Int32
}

func (r *requestRecorder) Request(op proto.Op, code proto.Code, took time.Duration) {
	if took < 0 || took > time.Minute {
		code = 999 // reported as a mismatch
	}
	r.requests <- fmt.Sprintf("%s: %s", op, code)
}
func (r *requestRecorder) ConnOpened() { r.opened.Add(1) }
func (r *requestRecorder) ConnClosed() { r.closed.Add(1) }

// next returns the next request reported, waiting for it: the server
// reports a request once its reply is sent, so a moment after the client
// has the reply.
func (r *requestRecorder) next(t testing.TB) string {
	t.Helper()
	select {
	case s := <-r.requests:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no request reported within 10s")
		return ""
	}
}

// TestRequestObserver sends requests of every kind, well-formed or not,
// and checks that each one is reported exactly once with its reply's op and
// code, and that every connection opened is reported closed.
func TestRequestObserver(t *testing.T) {
	testutil.CheckLeaks(t)
	rec := &requestRecorder{requests: make(chan string, 100)}
	path, _ := serve(t, holder.ServerOptions{Limits: holder.Limits{MaxConns: 1}, Requests: rec}, nil)

	c := holdertest.DialRaw(t, path, 5*time.Second)
	ln1 := tcpListener(t)
	for _, tt := range []struct {
		name string
		msg  []byte
		fds  []int
		want string
	}{
		{name: "store", msg: holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "web"}), fds: []int{ln1}, want: "store: ok"},
		{name: "store again", msg: holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "web"}), fds: []int{ln1}, want: "store: already held"},
		{name: "store without descriptor", msg: holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "x"}), want: "store: wrong number of descriptors"},
		{name: "get", msg: holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "web"}), want: "get: ok"},
		{name: "get missing", msg: holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "none"}), want: "get: not found"},
		{name: "list", msg: holdertest.Encode(t, proto.Request{Op: proto.OpList}), want: "list: ok"},
		{name: "garbage", msg: []byte("not a request at all"), want: "op(32): bad request"}, // the op byte is the fourth: " ",
		{name: "take", msg: holdertest.Encode(t, proto.Request{Op: proto.OpTake, Name: "web"}), want: "take: ok"},
		{name: "delete missing", msg: holdertest.Encode(t, proto.Request{Op: proto.OpDelete, Name: "web"}), want: "delete: not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep, _ := c.RoundTrip(tt.msg, tt.fds...) // closes what the reply carried
			if got := rec.next(t); got != tt.want {
				t.Errorf("reported %q, want %q", got, tt.want)
			}
			if want := fmt.Sprintf("%s: %s", rep.Op&^proto.ReplyBit, rep.Code); tt.want != want {
				t.Errorf("the reply was %q, want %q", want, tt.want)
			}
		})
	}

	// A second connection is beyond MaxConns: its request is answered
	// with the limit, and reported so.
	c2 := holdertest.DialRaw(t, path, 5*time.Second)
	if rep, _ := c2.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "web"})); rep.Code != proto.CodeLimit {
		t.Fatalf("beyond MaxConns: %v", rep.Err())
	}
	if got := rec.next(t); got != "get: limit reached" {
		t.Errorf("reported %q for the refused connection", got)
	}
	c.Close()
	c2.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rec.closed.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if o, cl := rec.opened.Load(), rec.closed.Load(); o != 2 || cl != 2 {
		t.Errorf("%d connections reported opened and %d closed, want 2 and 2", o, cl)
	}
	select {
	case s := <-rec.requests:
		t.Errorf("a request reported twice or unasked: %q", s)
	default:
	}
}
