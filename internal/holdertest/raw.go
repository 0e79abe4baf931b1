package holdertest

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
)

// RawConn is a client end of a holder connection that can send any bytes
// with any descriptors attached, as a hostile or broken peer would. It uses
// blocking system calls on a raw descriptor, so that nothing between the
// test and the kernel tidies up what it sends.
type RawConn struct {
	t  testing.TB
	FD int // the connected SOCK_SEQPACKET socket; -1 once closed
}

// DialRaw connects to the holder at path. Reads time out after timeout
// (SO_RCVTIMEO), so a holder that never answers fails the test instead of
// hanging it. The connection is closed at the end of the test.
func DialRaw(t testing.TB, path string, timeout time.Duration) *RawConn {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		t.Fatalf("connect %s: %v", path, err)
	}
	tv := unix.NsecToTimeval(int64(timeout))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	c := &RawConn{t: t, FD: fd}
	t.Cleanup(c.Close)
	return c
}

// Close closes the connection; closing it again does nothing.
func (c *RawConn) Close() {
	if c.FD >= 0 {
		unix.Close(c.FD)
		c.FD = -1
	}
}

// Send sends msg with fds attached (the caller keeps them); it reports
// false if the holder has closed the connection.
func (c *RawConn) Send(msg []byte, fds ...int) bool {
	c.t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	err := unix.Sendmsg(c.FD, msg, oob, nil, 0)
	if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		return false
	}
	if err != nil {
		c.t.Fatalf("sendmsg of %d bytes, %d descriptors: %v", len(msg), len(fds), err)
	}
	return true
}

// Recv reads one reply, closes every descriptor that came with it and
// counts them. ok is false when the holder closed the connection instead.
func (c *RawConn) Recv() (rep proto.Reply, fds int, ok bool) {
	c.t.Helper()
	buf := make([]byte, proto.MaxReplySize)
	rights := make([]byte, unix.CmsgSpace(proto.MaxMessageFDs*4))
	var n, oobn int
	var err error
	for {
		// The Go runtime's preemption signals interrupt a blocking recvmsg.
		n, oobn, _, _, err = unix.Recvmsg(c.FD, buf, rights, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if errors.Is(err, unix.ECONNRESET) || err == nil && n == 0 {
		return proto.Reply{}, 0, false
	}
	if err != nil {
		c.t.Fatalf("recvmsg: %v", err)
	}
	if oobn > 0 {
		msgs, _ := unix.ParseSocketControlMessage(rights[:oobn])
		for _, m := range msgs {
			rs, _ := unix.ParseUnixRights(&m)
			for _, fd := range rs {
				unix.Close(fd)
				fds++
			}
		}
	}
	rep, err = proto.DecodeReply(buf[:n])
	if err != nil {
		c.t.Fatalf("the holder's reply does not decode: %v (% x)", err, buf[:n])
	}
	return rep, fds, true
}

// RoundTrip sends msg and returns the reply and the number of descriptors
// it carried (closed); the holder must keep the connection open.
func (c *RawConn) RoundTrip(msg []byte, fds ...int) (proto.Reply, int) {
	c.t.Helper()
	if !c.Send(msg, fds...) {
		c.t.Fatal("the holder closed the connection before the request")
	}
	rep, n, ok := c.Recv()
	if !ok {
		c.t.Fatal("the holder closed the connection instead of answering")
	}
	return rep, n
}

// Encode returns the encoding of r, failing the test if it has none.
func Encode(t testing.TB, r proto.Request) []byte {
	t.Helper()
	b, err := proto.AppendRequest(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
