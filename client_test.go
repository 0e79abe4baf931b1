package fdholder_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

func dial(t testing.TB, path string) *fdholder.Client {
	t.Helper()
	c, err := fdholder.Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// accepts checks that f is a listener that accepts a connection made to addr.
func accepts(t testing.TB, f *os.File, addr string) {
	t.Helper()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatalf("FileListener: %v", err)
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on the held socket: %v", err)
	}
	s.Close()
}

func TestStoreGetTakeDelete(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := dial(t, h.Path)
	ctx := context.Background()

	ln := testutil.ListenTCP(t)
	addr := ln.Addr().String()
	e, err := c.Store(ctx, "web", ln, fdholder.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "web" || e.Network != "tcp" || e.Address != addr || !e.Listening || e.OwnerPID != int32(os.Getpid()) {
		t.Errorf("stored entry = %+v", e)
	}
	ln.Close() // the holder's copy keeps the socket open

	if _, err := c.Store(ctx, "web", testutil.ListenTCP(t), fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrExists) {
		t.Errorf("second store: err = %v, want ErrExists", err)
	}
	f, e, err := c.Get(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if e.Address != addr {
		t.Errorf("get: address %q, want %q", e.Address, addr)
	}
	accepts(t, f, addr)
	f.Close()

	f, _, err = c.Take(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	accepts(t, f, addr)
	f.Close()
	if _, _, err := c.Get(ctx, "web"); !errors.Is(err, fdholder.ErrNotFound) {
		t.Errorf("get after take: err = %v, want ErrNotFound", err)
	}
	if err := c.Delete(ctx, "web"); !errors.Is(err, fdholder.ErrNotFound) {
		t.Errorf("delete after take: err = %v, want ErrNotFound", err)
	}
	if _, err := c.Store(ctx, "bad:name", testutil.ListenTCP(t), fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrInvalidName) {
		t.Errorf("store bad name: err = %v", err)
	}
}

func TestListPages(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := dial(t, h.Path)
	ctx := context.Background()
	ln := testutil.ListenTCP(t)
	const n = 1500 // several pages of ~64 KiB
	for i := range n {
		if _, err := c.Store(ctx, fmt.Sprintf("svc/%04d-%0200d", i, 0), ln, fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("list: %d entries, want %d", len(all), n)
	}
	for i, e := range all {
		if want := fmt.Sprintf("svc/%04d-%0200d", i, 0); e.Name != want {
			t.Fatalf("entry %d is %q, want %q", i, e.Name, want)
		}
		if !e.HasQueue || e.Backlog == 0 {
			t.Fatalf("entry %q has no accept queue figures: %+v", e.Name, e)
		}
	}
}

func TestListenGetOrCreate(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	ctx := context.Background()
	sock := filepath.Join(testutil.ShortDir(t), "app.sock")
	var wg sync.WaitGroup
	addrs := make([]string, 8)
	for i := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, h.Path)
			ln, err := c.Listen(ctx, "app", "unix", sock)
			if err != nil {
				t.Error(err)
				return
			}
			addrs[i] = ln.Addr().String()
			ln.Close()
		}()
	}
	wg.Wait()
	for _, a := range addrs {
		if a != sock {
			t.Errorf("listener address %q, want %q", a, sock)
		}
	}
	// The socket file survives the listeners' Close: the holder's copy
	// still accepts on it.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial the held unix socket: %v", err)
	}
	conn.Close()
	entries, err := dial(t, h.Path).List(ctx)
	if err != nil || len(entries) != 1 {
		t.Fatalf("list = %v, %v; want one entry", entries, err)
	}
}

func TestSocketPath(t *testing.T) {
	t.Setenv("FDHOLDER_SOCKET", "/x/y.sock")
	if got := fdholder.SocketPath(); got != "/x/y.sock" {
		t.Errorf("with FDHOLDER_SOCKET: %q", got)
	}
	t.Setenv("FDHOLDER_SOCKET", "")
	want := "/run/fdholder/fdholder.sock"
	if os.Geteuid() != 0 {
		t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
		want = "/run/user/1000/fdholder/fdholder.sock"
	}
	if got := fdholder.SocketPath(); got != want {
		t.Errorf("default: %q, want %q", got, want)
	}
}

func TestUnreachable(t *testing.T) {
	testutil.CheckLeaks(t)
	_, err := fdholder.Dial(context.Background(), filepath.Join(testutil.ShortDir(t), "none.sock"))
	if !errors.Is(err, fdholder.ErrUnreachable) {
		t.Fatalf("dial of a missing socket: %v, want ErrUnreachable", err)
	}
}

// TestReconnect: a client whose holder went away and came back on the same
// path serves its next get on a fresh connection.
func TestReconnect(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := dial(t, h.Path)
	ctx := context.Background()
	if _, err := c.Store(ctx, "web", testutil.ListenTCP(t), fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	// Drop every connection, as a restarting holder would, then serve the
	// same registry on a new listener at the same path.
	h.Server.Close()
	os.Remove(h.Path)
	holdertest.StartOn(t, h.Path, h.Registry)
	f, _, err := c.Get(ctx, "web")
	if err != nil {
		t.Fatalf("get after the holder came back: %v", err)
	}
	f.Close()
}

func TestContextCancel(t *testing.T) {
	testutil.CheckLeaks(t)
	// A peer that accepts and never answers.
	ln, path := packetListener(t, "mute")
	go func() {
		c, err := ln.Accept()
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	c := dial(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.List(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("list against a mute peer: %v, want DeadlineExceeded", err)
	}
}

// packetListener listens on a new SOCK_SEQPACKET socket NAME.sock in a
// short directory, as a holder would, for a peer that plays one; it is
// closed when the test ends.
func packetListener(t testing.TB, name string) (*net.UnixListener, string) {
	t.Helper()
	path := filepath.Join(testutil.ShortDir(t), name+".sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, path
}

// mutePeer listens as a holder that accepts one connection, reads its first
// request and never answers; got is closed once that request arrived (the
// client then waits for its reply).
func mutePeer(t testing.TB) (path string, got <-chan struct{}) {
	t.Helper()
	ln, path := packetListener(t, "mute")
	arrived := make(chan struct{})
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Read(make([]byte, 1024)); err == nil {
			close(arrived)
		}
	}()
	return path, arrived
}

// TestContextCancelWakes: cancelling a request's context wakes the client
// blocked in recvmsg(2) (the connection is shut down), and the client's
// next request dials again.
func TestContextCancelWakes(t *testing.T) {
	testutil.CheckLeaks(t)
	path, got := mutePeer(t)
	c := dial(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-got
		cancel()
	}()
	if _, err := c.List(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("list cancelled while waiting: %v, want Canceled", err)
	}
}

// TestStaleTimeout: a request without a deadline on a connection whose
// last request had a short one waits for its reply as long as it takes
// (the socket's older SO_RCVTIMEO ends the wait early and is replaced).
//
// The time is the subject: the peer answers the second request on a
// connection 10 times the first one's deadline after it arrives, longer
// than any SO_RCVTIMEO the first could leave. Only the first request's
// deadline meets the machine's speed; a machine too busy to answer within
// it gets the first request again, on a fresh connection, with twice the
// deadline, instead of failing the test.
func TestStaleTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	ln, path := packetListener(t, "slow")
	var short atomic.Int64    // the first request's deadline, in nanoseconds
	var accepted atomic.Int32 // connections accepted
	serve := func(c *net.UnixConn) {
		defer c.Close()
		buf := make([]byte, 1024)
		for i := 0; ; i++ {
			if _, err := c.Read(buf); err != nil {
				return
			}
			if i == 1 {
				// Longer than the first request's whole deadline: the
				// reply must still be awaited.
				time.Sleep(10 * time.Duration(short.Load()))
			}
			rep, err := proto.AppendReply(nil, &proto.Reply{Op: proto.OpList})
			if err != nil {
				return
			}
			c.Write(rep)
		}
	}
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			accepted.Add(1)
			go serve(c)
		}
	}()
	c := dial(t, path)
	for d := 20 * time.Millisecond; ; d *= 2 {
		short.Store(int64(d))
		ctx, cancel := context.WithTimeout(context.Background(), d)
		_, err := c.List(ctx)
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, context.DeadlineExceeded) || d >= 5*time.Second {
			t.Fatalf("first list, within %v: %v", d, err)
		}
		t.Logf("the first list took longer than %v on this machine: again with %v", d, 2*d)
	}
	conns := accepted.Load()
	if _, err := c.List(context.Background()); err != nil {
		t.Fatalf("second list, without a deadline: %v", err)
	}
	// The client retries a failed idempotent request once on a fresh
	// connection, which this peer answers at once: the wait that ended
	// early would pass unseen.
	if n := accepted.Load(); n != conns {
		t.Errorf("the second list was answered on a new connection (%d accepted, %d before): its wait on the first ended early", n, conns)
	}
}

// TestVersionMismatch: a peer speaking another protocol version is reported
// as such, not misread.
func TestVersionMismatch(t *testing.T) {
	testutil.CheckLeaks(t)
	ln, path := packetListener(t, "v2")
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1024)
		if _, err := c.Read(buf); err != nil {
			return
		}
		// A version 2 holder's reply: magic, version 2, then whatever.
		c.Write([]byte{'F', 'H', 2, 0x82, 0, 0, 0, 2, 0xde, 0xad})
	}()
	_, _, err := dial(t, path).Get(context.Background(), "web")
	if !errors.Is(err, fdholder.ErrUnsupportedVersion) || !strings.Contains(err.Error(), "holder speaks version 2") {
		t.Fatalf("err = %v, want ErrUnsupportedVersion naming version 2", err)
	}
}

// TestListenEmptyPort checks that an empty port is refused before anything
// is bound or stored, every time: net.Listen would take it for port 0, and
// a second call for the same name would then find the held socket on
// another port than the empty one asked for (a *MismatchError).
func TestListenEmptyPort(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := dial(t, h.Path)
	ctx := context.Background()
	tests := []struct {
		name string
		call func(network, address string) error
	}{
		{"ListenFile", func(network, address string) error {
			f, _, err := c.ListenFile(ctx, "web", network, address)
			if f != nil {
				f.Close()
			}
			return err
		}},
		{"Listen", func(network, address string) error {
			ln, err := c.Listen(ctx, "web", network, address)
			if ln != nil {
				ln.Close()
			}
			return err
		}},
		{"ListenPacket", func(network, address string) error {
			pc, err := c.ListenPacket(ctx, "dns", network, address)
			if pc != nil {
				pc.Close()
			}
			return err
		}},
		{"ListenAndStore", func(network, address string) error {
			_, err := c.ListenAndStore(ctx, "web", network, address, fdholder.StoreOptions{})
			return err
		}},
		{"Bind", func(network, address string) error {
			f, err := fdholder.Bind(ctx, network, address)
			if f != nil {
				f.Close()
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			network := "tcp"
			if tt.name == "ListenPacket" {
				network = "udp"
			}
			for _, address := range []string{"127.0.0.1:", "127.0.0.1:", ":"} {
				err := tt.call(network, address)
				if !errors.Is(err, fdholder.ErrBadAddress) || !strings.Contains(err.Error(), "empty port") {
					t.Errorf("%s %s: %v, want ErrBadAddress (empty port)", network, address, err)
				}
			}
		})
	}
	if entries, err := c.List(ctx); err != nil || len(entries) != 0 {
		t.Errorf("list = %v, %v; want nothing held", entries, err)
	}
	// Port 0 is the way to ask for any port, and asking again gets the
	// held socket.
	for i := range 2 {
		f, created, err := c.ListenFile(ctx, "web", "tcp", "127.0.0.1:0")
		if f != nil {
			f.Close()
		}
		if err != nil || created != (i == 0) {
			t.Fatalf("ListenFile 127.0.0.1:0, call %d: created %v, %v", i+1, created, err)
		}
	}
}

func TestListenAndStore(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := dial(t, h.Path)
	ctx := context.Background()
	dir := testutil.ShortDir(t)
	tests := []struct {
		name, network, address string
		wantNetwork            string
		listening              bool
		file                   string // a Unix socket's file, which must stay
	}{
		{"tcp", "tcp4", "127.0.0.1:0", "tcp", true, ""},
		{"udp", "udp4", "127.0.0.1:0", "udp", false, ""},
		{"unix", "unix", filepath.Join(dir, "s.sock"), "unix", true, filepath.Join(dir, "s.sock")},
		{"unixgram", "unixgram", filepath.Join(dir, "g.sock"), "unixgram", false, filepath.Join(dir, "g.sock")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := c.ListenAndStore(ctx, tt.name, tt.network, tt.address, fdholder.StoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if e.Name != tt.name || e.Network != tt.wantNetwork || e.Listening != tt.listening ||
				e.Address == "" || strings.HasSuffix(e.Address, ":0") {
				t.Errorf("entry = %+v", e)
			}
			if tt.file != "" {
				if _, err := os.Stat(tt.file); err != nil {
					t.Errorf("the socket's file is gone: %v", err)
				}
			}
			// A second one under the same name fails, and leaves no file of
			// its own behind.
			second := tt.address
			if tt.file != "" {
				second = tt.file + ".2"
			}
			if _, err := c.ListenAndStore(ctx, tt.name, tt.network, second, fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrExists) {
				t.Errorf("second store: %v, want ErrExists", err)
			}
			if tt.file != "" {
				if _, err := os.Stat(second); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the refused socket's file was left behind: %v", err)
				}
			}
		})
	}
	// The TCP entry is the socket the holder keeps: it accepts.
	f, e, err := c.Get(ctx, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	accepts(t, f, e.Address)
	f.Close()
}

// TestConcurrentGets runs many gets at once on one Client, each for one of
// several held listeners, and checks that every descriptor returned is the
// socket held under the name asked for (its inode, and the entry's name
// and address): a get must take its descriptor before the next request
// reuses the Client's receive slot. Run it with -race.
func TestConcurrentGets(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := dial(t, h.Path)
	ctx := context.Background()

	type held struct {
		name, addr string
		ino        uint64
	}
	var want []held
	for _, name := range []string{"a", "b", "c", "d"} {
		ln := testutil.ListenTCP(t)
		if _, err := c.Store(ctx, name, ln, fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
		ino, err := inode(ln)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, held{name: name, addr: ln.Addr().String(), ino: ino})
	}

	const goroutines, gets = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range gets {
				w := want[(g+i)%len(want)]
				f, e, err := c.Get(ctx, w.name)
				if err != nil {
					errs <- err
					return
				}
				ino, err := inode(f)
				f.Close()
				if err != nil {
					errs <- err
					return
				}
				if ino != w.ino || e.Name != w.name || e.Address != w.addr {
					errs <- fmt.Errorf("get %q: inode %d, entry %q at %s; want inode %d at %s", w.name, ino, e.Name, e.Address, w.ino, w.addr)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// inode is the inode number of sc's socket, read inside Control (Fd would
// switch the shared file description to blocking mode).
func inode(sc syscall.Conn) (uint64, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		return 0, err
	}
	return st.Ino, os.NewSyscallError("fstat", serr)
}
