package holder_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// tcpListener returns the raw descriptor of a new TCP listener, closed at
// the end of the test.
func tcpListener(t testing.TB) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	return fd
}

func pipeFD(t testing.TB) int {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0]
}

// TestBadInput sends requests the holder must refuse: each gets a clear
// error reply, leaks no descriptor, and leaves the held entry and the
// connection serving.
func TestBadInput(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := holdertest.DialRaw(t, h.Path, 5*time.Second)
	ln := tcpListener(t)
	if rep, _ := c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "held"}), ln); rep.Code != proto.CodeOK {
		t.Fatalf("store: %v", rep.Err())
	}
	many := make([]int, proto.MaxMessageFDs)
	for i := range many {
		many[i] = ln
	}
	get := holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "held"})
	storeX := holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "x"})
	other := append([]byte(nil), get...)
	other[2] = 9
	tests := []struct {
		name string
		msg  []byte
		fds  []int
		code proto.Code
		want string
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), nil, proto.CodeBadRequest, "bad magic"},
		{"garbage with a descriptor", []byte("hello"), []int{ln}, proto.CodeBadRequest, "bad magic"},
		{"other protocol version", other, nil, proto.CodeUnsupportedVersion, "version 9"},
		{"unknown op", []byte{'F', 'H', proto.Version, 42, 0, 0, 0, 0}, nil, proto.CodeUnknownOp, "42"},
		{"truncated", get[:proto.HeaderSize+2], nil, proto.CodeBadRequest, "truncated"},
		{"oversized", append(get, make([]byte, proto.MaxRequestSize)...), []int{ln}, proto.CodeTooLarge, "exceeds"},
		{"descriptor on get", get, []int{ln}, proto.CodeBadDescriptors, "only store carries one"},
		{"store without descriptor", storeX, nil, proto.CodeBadDescriptors, "no descriptor"},
		{"store with two", storeX, []int{ln, ln}, proto.CodeBadDescriptors, "2 descriptors"},
		{"store with 253", storeX, many, proto.CodeBadDescriptors, "253 descriptors"},
		{"store a pipe", storeX, []int{pipeFD(t)}, proto.CodeNotSocket, "a pipe"},
		{"invalid name", holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "a:b"}), []int{ln}, proto.CodeInvalidName, proto.NameRule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, fds := c.RoundTrip(tt.msg, tt.fds...)
			if rep.Code != tt.code || !strings.Contains(rep.Message, tt.want) {
				t.Errorf("reply = %v %q, want %v containing %q", rep.Code, rep.Message, tt.code, tt.want)
			}
			if fds != 0 {
				t.Errorf("an error reply carried %d descriptors", fds)
			}
			// The connection still serves, and the held entry is intact.
			if rep, fds := c.RoundTrip(get); rep.Code != proto.CodeOK || fds != 1 {
				t.Fatalf("get after bad input: %v, %d descriptors", rep.Err(), fds)
			}
		})
	}
	if h.Registry.Len() != 1 {
		t.Errorf("registry holds %d entries, want 1", h.Registry.Len())
	}
}

// TestPeerVanishes: peers that send a store with descriptors attached and
// vanish before reading the reply leave nothing open and nothing held.
func TestPeerVanishes(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	for range 20 {
		c := holdertest.DialRaw(t, h.Path, 5*time.Second)
		ln := tcpListener(t)
		fds := []int{ln, ln, ln}
		if err := unix.Sendmsg(c.FD, holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "v"}), unix.UnixRights(fds...), nil, 0); err != nil {
			t.Fatal(err)
		}
		unix.Close(c.FD)
		c.FD = -1
	}
	// The holder processed or dropped every message: nothing is held.
	c := holdertest.DialRaw(t, h.Path, 5*time.Second)
	rep, _ := c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpList}))
	if rep.Code != proto.CodeOK || len(rep.Entries) != 0 {
		t.Fatalf("list = %v %+v", rep.Err(), rep.Entries)
	}
}

func TestShutdownFinishesAndCloses(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	idle := holdertest.DialRaw(t, h.Path, 5*time.Second)
	// One round trip, so that the holder has accepted the connection: a
	// connection still in the listen queue is reset when the listener closes.
	if rep, _ := idle.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpList})); rep.Code != proto.CodeOK {
		t.Fatal(rep.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Server.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The idle connection was closed: a read sees the end of the stream.
	n, err := unix.Read(idle.FD, make([]byte, 8))
	if n != 0 || err != nil {
		t.Errorf("read on an idle connection after shutdown = %d, %v; want end of stream", n, err)
	}
	if _, err := net.Dial("unixpacket", h.Path); err == nil {
		t.Error("the holder still accepts after shutdown")
	}
}

// TestConcurrentClients serves many clients at once, each doing a mix of
// requests on one shared name, and checks every reply.
func TestConcurrentClients(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	ln := tcpListener(t)
	setup := holdertest.DialRaw(t, h.Path, 5*time.Second)
	if rep, _ := setup.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "shared"}), ln); rep.Code != proto.CodeOK {
		t.Fatal(rep.Err())
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := holdertest.DialRaw(t, h.Path, 5*time.Second)
			get := holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "shared"})
			for range 100 {
				rep, fds := c.RoundTrip(get)
				if rep.Code != proto.CodeOK || fds != 1 || rep.Entry.Name != "shared" {
					t.Errorf("get: %v, %d descriptors", rep.Err(), fds)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestServeAfterShutdown(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	h.Server.Close()
	path := filepath.Join(testutil.ShortDir(t), "late.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Server.Serve(context.Background(), ln); !errors.Is(err, holder.ErrServerClosed) {
		t.Errorf("Serve after Close = %v", err)
	}
	if _, err := os.Stat(path); err == nil {
		if _, err := net.Dial("unixpacket", path); err == nil {
			t.Error("Serve after Close left the listener open")
		}
	}
}
