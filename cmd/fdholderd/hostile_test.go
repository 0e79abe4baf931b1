package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// The hostile input tests each start a real fdholderd holding a few
// listeners, throw one kind of bad input at it, and then check that it
// came through whole (hostileHolder.check): still running, the same
// number of descriptors open, every held listener still held and still
// accepting, and a new client served.

// hostileHolder is a real fdholderd with a few held listeners.
type hostileHolder struct {
	d      *daemon
	path   string
	c      *fdholder.Client // a well-behaved client, connected throughout
	held   map[string]string
	before int // the holder's descriptors after warm-up
}

func startHostile(t testing.TB, args ...string) *hostileHolder {
	t.Helper()
	path := sharedSocket(t)
	h := &hostileHolder{path: path, held: map[string]string{}}
	h.d = startServing(t, daemonOpts{socket: path, args: append([]string{"--log-level", "info"}, args...)})
	h.c = dial(t, path)
	for _, name := range []string{"keep/a", "keep/b", "keep/c"} {
		h.held[name] = storeNew(t, h.c, name)
	}
	// A round on a connection of its own, so that whatever the runtime
	// opens once is open before counting; counted once the holder has
	// closed that connection and the entry it stored.
	socks := h.d.sockets()
	fresh := dial(t, path)
	storeGet(t, fresh, "warm-up")
	if err := fresh.Delete(testCtx(t), "warm-up"); err != nil {
		t.Fatal(err)
	}
	fresh.Close()
	h.before = h.d.fdsWithSockets(socks)
	return h
}

// check asserts that the holder came through: it runs, its descriptor
// count is back to what it was, it holds exactly the entries it held, each
// one still accepts, and a new client and the old one are served.
func (h *hostileHolder) check(t testing.TB) {
	t.Helper()
	select {
	case <-h.d.exited:
		t.Fatalf("fdholderd exited: %v", h.d.err)
	default:
	}
	es, err := h.c.List(testCtx(t))
	if err != nil {
		t.Fatalf("list on the well-behaved connection: %v", err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
	}
	if want := "keep/a keep/b keep/c"; strings.Join(names, " ") != want {
		t.Errorf("the holder holds %v, want %s", names, want)
	}
	for name, addr := range h.held {
		checkAccepts(t, h.c, name, addr)
	}
	fresh := dial(t, h.path)
	storeGet(t, fresh, "after")
	if err := fresh.Delete(testCtx(t), "after"); err != nil {
		t.Fatal(err)
	}
	fresh.Close()
	waitFDs(t, h.d, h.before)
}

// pipeFDs returns both ends of a new pipe, closed at the end of the test.
func pipeFDs(t testing.TB) (int, int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// tcpFD returns the descriptor of a new TCP listener, closed at the end of
// the test.
func tcpFD(t testing.TB) int {
	t.Helper()
	ln := testutil.ListenTCP(t)
	f, err := ln.File() // a duplicate in blocking mode: this test's copy only
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

func TestHostileBytes(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t)
	rng := rand.New(rand.NewPCG(1, 2))
	c := holdertest.DialRaw(t, h.path, waitTimeout)
	answered, closed := 0, 0
	// Random bytes of every size up to past the request limit, then some
	// far larger; half of them start with a valid magic and version, to
	// get past the first check of the decoder.
	sizes := []int{}
	for n := 1; n <= proto.MaxRequestSize+64; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 4096, 65536, 150000)
	for i, n := range sizes {
		msg := make([]byte, n)
		for j := range msg {
			msg[j] = byte(rng.UintN(256))
		}
		if i%2 == 0 && n >= 4 {
			msg[0], msg[1], msg[2] = 'F', 'H', proto.Version
			msg[3] &^= byte(proto.ReplyBit)
		}
		if !c.Send(msg) {
			c = holdertest.DialRaw(t, h.path, waitTimeout)
			closed++
			continue
		}
		rep, fds, ok := c.Recv()
		if !ok {
			c = holdertest.DialRaw(t, h.path, waitTimeout)
			closed++
			continue
		}
		answered++
		if rep.Code == proto.CodeOK || fds != 0 {
			t.Fatalf("%d random bytes were served: %+v with %d descriptors", n, rep, fds)
		}
		if n > proto.MaxRequestSize && rep.Code != proto.CodeTooLarge {
			t.Errorf("%d bytes: code %v, want too large", n, rep.Code)
		}
	}
	t.Logf("%d random messages answered with an error, %d closed the connection", answered, closed)
	if closed > 0 {
		t.Errorf("the holder closed the connection on %d messages it could have answered", closed)
	}
	c.Close()
	h.check(t)
}

func TestHostileMalformed(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t)
	get := holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "keep/a"})
	store := holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "keep/a", Flags: proto.FlagReplace})
	withVersion := func(b []byte, v byte) []byte { b = append([]byte(nil), b...); b[2] = v; return b }
	withOp := func(b []byte, op byte) []byte { b = append([]byte(nil), b...); b[3] = op; return b }
	tests := []struct {
		name string
		msg  []byte
		want proto.Code
	}{
		{name: "oversized", msg: append(get, make([]byte, proto.MaxRequestSize)...), want: proto.CodeTooLarge},
		{name: "trailing byte", msg: append(append([]byte(nil), get...), 0), want: proto.CodeBadRequest},
		{name: "bad magic", msg: append([]byte("XX"), get[2:]...), want: proto.CodeBadRequest},
		{name: "version 0", msg: withVersion(get, 0), want: proto.CodeUnsupportedVersion},
		{name: "version 2", msg: withVersion(get, 2), want: proto.CodeUnsupportedVersion},
		{name: "version 255", msg: withVersion(get, 255), want: proto.CodeUnsupportedVersion},
		{name: "op 0", msg: withOp(get, 0), want: proto.CodeUnknownOp},
		{name: "op 100", msg: withOp(get, 100), want: proto.CodeUnknownOp},
		{name: "op 127", msg: withOp(get, 127), want: proto.CodeUnknownOp},
		{name: "reply bit in a request", msg: withOp(get, byte(proto.OpGet|proto.ReplyBit)), want: proto.CodeUnknownOp},
		{name: "unknown flag", msg: func() []byte { b := append([]byte(nil), get...); b[5] = 0x80; return b }(), want: proto.CodeBadRequest},
		{name: "status in a request", msg: func() []byte { b := append([]byte(nil), get...); b[7] = 1; return b }(), want: proto.CodeBadRequest},
	}
	// Every truncation of a get and of a store.
	for n := 1; n < len(get); n++ {
		tests = append(tests, struct {
			name string
			msg  []byte
			want proto.Code
		}{name: fmt.Sprintf("get cut to %d bytes", n), msg: get[:n], want: proto.CodeBadRequest})
	}
	for n := proto.HeaderSize; n < len(store); n++ {
		tests = append(tests, struct {
			name string
			msg  []byte
			want proto.Code
		}{name: fmt.Sprintf("store cut to %d bytes", n), msg: store[:n], want: proto.CodeBadRequest})
	}
	c := holdertest.DialRaw(t, h.path, waitTimeout)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, fds := c.RoundTrip(tt.msg)
			if rep.Code == proto.CodeOK || fds != 0 {
				t.Fatalf("served: %+v with %d descriptors", rep, fds)
			}
			if rep.Code != tt.want && !(tt.want == proto.CodeBadRequest && rep.Code == proto.CodeUnsupportedVersion && len(tt.msg) < 3) {
				t.Errorf("code %v (%s), want %v", rep.Code, rep.Message, tt.want)
			}
		})
	}
	// An empty message is the end of the stream on SOCK_SEQPACKET: the
	// holder closes the connection.
	c.Send(nil)
	if _, _, ok := c.Recv(); ok {
		t.Error("the holder answered an empty message; want the connection closed")
	}
	h.check(t)
}

func TestHostileDescriptors(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t)
	rd, wr := pipeFDs(t)
	sock := tcpFD(t)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	dir, err := os.Open(h.path[:strings.LastIndexByte(h.path, '/')])
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	memfd, err := unix.MemfdCreate("fdh", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(memfd)
	many := func(fd, n int) []int {
		fds := make([]int, n)
		for i := range fds {
			fds[i] = fd
		}
		return fds
	}
	// An O_PATH descriptor of the holder's own socket file: fstat(2) says
	// socket, but it is none.
	opath, err := unix.Open(h.path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(opath)
	store := holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "hostile"})
	replace := holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "keep/a", Flags: proto.FlagReplace})
	tests := []struct {
		name string
		msg  []byte
		fds  []int
		want proto.Code
		// message, if set, must be in the reply's message.
		message string
	}{
		{name: "store with none", msg: store, want: proto.CodeBadDescriptors},
		{name: "store with two", msg: store, fds: []int{sock, sock}, want: proto.CodeBadDescriptors},
		{name: "store with 253", msg: store, fds: many(sock, proto.MaxMessageFDs), want: proto.CodeBadDescriptors},
		{name: "replace with 253", msg: replace, fds: many(sock, proto.MaxMessageFDs), want: proto.CodeBadDescriptors},
		{name: "get with 253", msg: holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "keep/a"}), fds: many(rd, proto.MaxMessageFDs), want: proto.CodeBadDescriptors},
		{name: "list with 253 pipes", msg: holdertest.Encode(t, proto.Request{Op: proto.OpList}), fds: many(wr, proto.MaxMessageFDs), want: proto.CodeBadDescriptors},
		{name: "delete with one", msg: holdertest.Encode(t, proto.Request{Op: proto.OpDelete, Name: "keep/a"}), fds: []int{sock}, want: proto.CodeBadDescriptors},
		{name: "garbage with 253", msg: []byte("garbage"), fds: many(sock, proto.MaxMessageFDs), want: proto.CodeBadDescriptors},
		{name: "oversized with 253", msg: make([]byte, 4*proto.MaxRequestSize), fds: many(sock, proto.MaxMessageFDs), want: proto.CodeTooLarge},
		{name: "store a pipe", msg: store, fds: []int{rd}, want: proto.CodeNotSocket},
		{name: "replace with a pipe", msg: replace, fds: []int{wr}, want: proto.CodeNotSocket},
		{name: "store /dev/null", msg: store, fds: []int{int(devnull.Fd())}, want: proto.CodeNotSocket},
		{name: "store a directory", msg: store, fds: []int{int(dir.Fd())}, want: proto.CodeNotSocket},
		{name: "store an eventfd", msg: store, fds: []int{efd}, want: proto.CodeNotSocket},
		{name: "store a memfd", msg: store, fds: []int{memfd}, want: proto.CodeNotSocket},
		{name: "store an O_PATH socket file", msg: store, fds: []int{opath}, want: proto.CodeNotSocket, message: "O_PATH"},
		{name: "load of 254 entries", msg: load254(t), fds: many(sock, proto.MaxMessageFDs), want: proto.CodeTooLarge,
			message: fmt.Sprintf("254 entries; a batch holds 1 to %d", proto.MaxBatchEntries)},
	}
	c := holdertest.DialRaw(t, h.path, waitTimeout)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, fds := c.RoundTrip(tt.msg, tt.fds...)
			if rep.Code != tt.want || fds != 0 || !strings.Contains(rep.Message, tt.message) {
				t.Errorf("code %v (%s) with %d descriptors, want %v %s", rep.Code, rep.Message, fds, tt.want, tt.message)
			}
		})
	}
	c.Close()
	h.check(t)
}

// load254 returns a load request of 254 entries, one more than a batch
// holds: the encoding of a 253-entry load with one entry more.
func load254(t testing.TB) []byte {
	t.Helper()
	es := make([]proto.Entry, proto.MaxBatchEntries)
	for i := range es {
		es[i] = proto.Entry{Name: fmt.Sprintf("l%d", i), StoredAt: time.Unix(1, 0)}
	}
	b := holdertest.Encode(t, proto.Request{Op: proto.OpLoad, Entries: es})
	one := holdertest.Encode(t, proto.Request{Op: proto.OpLoad, Entries: es[:1]})
	b = append(b, one[proto.HeaderSize+2:]...)
	b[proto.HeaderSize], b[proto.HeaderSize+1] = 0, 254
	return b
}

func TestHostileVanishingPeers(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t)
	sock := tcpFD(t)
	rd, _ := pipeFDs(t)
	many := make([]int, proto.MaxMessageFDs)
	for i := range many {
		many[i] = rd
	}
	// Each vanished peer's request is audited by exactly one "request"
	// record; a take that was not delivered logs "take not delivered" after
	// it, once the entry is restored. Counting both kinds together would
	// let one take's second record stand for another peer's request not
	// yet handled: a late store would then be held after the clean-up
	// below, and counted as a leak.
	mine := func(r record) bool { return r.num("peer_pid") == float64(os.Getpid()) }
	request := func(r record) bool { return mine(r) && r.str("msg") == "request" }
	undeliveredTake := func(r record) bool {
		return request(r) && r.str("op") == "take" && r.str("result") == "not delivered"
	}
	restored := func(r record) bool { return mine(r) && r.str("msg") == "take not delivered" }
	// The log is read as the holder writes it, so a count taken now may
	// miss records of requests already answered, which would then stand
	// for the vanished peers'. Instead, a request of its own on the
	// well-behaved connection (audited before its reply) marks the place:
	// only the records after it, in log order, are the vanished peers'.
	const marker = "vanish/marker"
	if err := h.c.Delete(testCtx(t), marker); !errors.Is(err, fdholder.ErrNotFound) {
		t.Fatalf("delete %s: %v, want not found", marker, err)
	}
	isMarker := func(r record) bool { return request(r) && r.str("name") == marker }
	h.d.waitFor("the marker request", isMarker)
	// after counts the records after the marker's that satisfy match.
	after := func(match func(record) bool) int {
		lines, _ := h.d.log.snapshot()
		n, on := 0, false
		for _, r := range records(lines) {
			if on && match(r) {
				n++
			}
			on = on || isMarker(r)
		}
		return n
	}
	const peers = 50
	for i := range peers {
		c := holdertest.DialRaw(t, h.path, waitTimeout)
		switch i % 5 {
		case 0: // a store, gone before the reply
			c.Send(holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: fmt.Sprintf("gone/%d", i)}), sock)
		case 1: // 253 descriptors, gone
			c.Send(holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "gone"}), many...)
		case 2: // a get, gone before its descriptor is read
			c.Send(holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "keep/a"}))
		case 3: // a take, gone before its descriptor is read: the entry comes back, or was taken
			c.Send(holdertest.Encode(t, proto.Request{Op: proto.OpTake, Name: "keep/b"}))
		case 4: // half a store (cut), with a descriptor, gone
			c.Send(holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "gone/cut"})[:10], sock)
		}
		c.Close()
	}
	// Each vanished peer's message is handled (and logged) on its own
	// goroutine: wait for all of them before looking.
	for deadline := time.Now().Add(waitTimeout); after(request) < peers || after(restored) < after(undeliveredTake); {
		if time.Now().After(deadline) {
			t.Fatalf("the holder logged %d of the %d vanished peers' requests, %d of %d undelivered takes' restores",
				after(request), peers, after(restored), after(undeliveredTake))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A take whose reply went out before the peer vanished is a take: the
	// entry is gone, legitimately. Put keep/b back as it was if so.
	f, _, err := h.c.Get(testCtx(t), "keep/b")
	if f != nil {
		f.Close()
	}
	if errors.Is(err, fdholder.ErrNotFound) {
		t.Log("a vanishing peer's take was delivered before it vanished; storing keep/b again")
		h.held["keep/b"] = storeNew(t, h.c, "keep/b")
	}
	// The stores that arrived before their peers vanished are held; that is
	// what a store is. Remove them.
	es, err := h.c.List(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if strings.HasPrefix(e.Name, "gone/") {
			if err := h.c.Delete(testCtx(t), e.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.check(t)
}

func TestHostileIdleConnections(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t)
	const idle = 300
	conns := make([]*holdertest.RawConn, idle)
	for i := range conns {
		conns[i] = holdertest.DialRaw(t, h.path, waitTimeout)
	}
	// Served all the same, while they idle.
	busy := dial(t, h.path)
	storeGet(t, busy, "busy")
	if err := busy.Delete(testCtx(t), "busy"); err != nil {
		t.Fatal(err)
	}
	busy.Close()
	if n := testutil.CountFDs(t, h.d.pid()); n < h.before+idle {
		t.Errorf("the holder has %d descriptors with %d connections open, want at least %d", n, idle, h.before+idle)
	}
	for _, c := range conns {
		c.Close()
	}
	h.check(t)
}

func TestHostileIdleTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t, "--idle-timeout", "1s")
	// A client that connects and sends nothing, one that sends half of a
	// request (a truncated message) and then nothing: both closed.
	silent := holdertest.DialRaw(t, h.path, waitTimeout)
	half := holdertest.DialRaw(t, h.path, waitTimeout)
	rep, _ := half.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "keep/a"})[:9])
	if rep.Code != proto.CodeBadRequest {
		t.Errorf("half a request: %v, want bad request", rep.Code)
	}
	for _, c := range []*holdertest.RawConn{silent, half} {
		start := time.Now()
		if _, _, ok := c.Recv(); ok {
			t.Error("an idle connection got a message; want it closed")
		}
		if time.Since(start) > waitTimeout/2 {
			t.Error("the idle connection was not closed")
		}
	}
	h.d.waitFor("the idle line", func(r record) bool {
		return r.str("msg") == "closing idle connection" && r.str("result") == "idle timeout" && r.num("peer_pid") > 0
	})
	h.check(t)
}

func TestHostileRequestTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t, "--request-timeout", "1s")
	fill := dial(t, h.path)
	ln := testutil.ListenTCP(t)
	for i := range listEntries {
		name := fmt.Sprintf("big/%03d-%s", i, strings.Repeat("x", nameLen-10))
		if _, err := fill.Store(testCtx(t), name, ln, fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ln.Close()
	// A client that asks for large replies and never reads them.
	pc := pipelineLists(t, h.path)
	h.d.waitFor("the request timeout", func(r record) bool {
		return r.str("msg") == "reply timed out: the client does not read; closing the connection" && r.str("result") == "request timeout"
	})
	storeGet(t, fill, "meanwhile")
	pc.Close()
	for i := range listEntries {
		if err := fill.Delete(testCtx(t), fmt.Sprintf("big/%03d-%s", i, strings.Repeat("x", nameLen-10))); err != nil {
			t.Fatal(err)
		}
	}
	if err := fill.Delete(testCtx(t), "meanwhile"); err != nil {
		t.Fatal(err)
	}
	fill.Close()
	h.check(t)
}

func TestHostileConnectionFlood(t *testing.T) {
	testutil.CheckLeaks(t)
	const maxConns = 50
	h := startHostile(t, "--max-conns", fmt.Sprint(maxConns))
	// h.c holds one connection. Flood: many connections at once, each
	// sending a list and waiting for its answer.
	//
	// Each request is sent as soon as its connection is made, before the
	// next connect: the holder answers a refused connection's request only
	// if it comes within refuseWait (200 ms) of the accept, and dialling
	// all 400 first let every refused connection's wait run out on a busy
	// machine (CI stress: 0 refused with an answer, 351 closed; the
	// answered count ranged from 19 to 342 in 15 runs). Sent with
	// connect(2) just returned, a request is queued before the holder
	// looks (a SOCK_SEQPACKET connection takes data before it is
	// accepted, unix(7)).
	const flood = 400
	get := holdertest.Encode(t, proto.Request{Op: proto.OpList})
	var mu sync.Mutex
	served, refused, closed := 0, 0, 0
	var open []*holdertest.RawConn
	for range flood {
		c := holdertest.DialRaw(t, h.path, waitTimeout)
		if !c.Send(get) {
			closed++ // closed at once, over the bound of refusals answered
			c.Close()
			continue
		}
		open = append(open, c)
	}
	var wg sync.WaitGroup
	for _, c := range open {
		wg.Go(func() {
			rep, _, ok := c.Recv()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !ok:
				closed++
			case rep.Code == proto.CodeOK:
				served++
			case rep.Code == proto.CodeLimit:
				refused++
				if !strings.Contains(rep.Message, fmt.Sprintf("too many connections: the holder serves at most %d", maxConns)) {
					t.Errorf("refusal message %q", rep.Message)
				}
			default:
				t.Errorf("unexpected reply %v: %s", rep.Code, rep.Message)
			}
		})
	}
	wg.Wait()
	t.Logf("flood of %d: %d served, %d refused with an answer, %d closed", flood, served, refused, closed)
	if served > maxConns-1 || served == 0 {
		t.Errorf("%d flood connections served, want 1 to %d", served, maxConns-1)
	}
	if refused == 0 {
		t.Error("no connection was refused with \"limit reached\"")
	}
	// The Go client reports the limit as ErrLimit.
	cl, err := fdholder.Dial(testCtx(t), h.path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.List(testCtx(t)); !errors.Is(err, fdholder.ErrLimit) && !errors.Is(err, fdholder.ErrUnreachable) {
		t.Errorf("list over the limit: %v, want ErrLimit", err)
	}
	cl.Close()
	h.d.waitFor("the refusal line", func(r record) bool {
		return strings.HasPrefix(r.str("msg"), "connection refused: too many connections") && r.num("max_conns") == maxConns
	})
	for _, c := range open {
		c.Close()
	}
	h.check(t)
}

func TestHostileNames(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t)
	max := strings.Repeat("n", proto.MaxNameLen)
	c := holdertest.DialRaw(t, h.path, waitTimeout)
	// A raw get with a name of n bytes that the encoder would refuse.
	rawGet := func(name string) []byte {
		return append([]byte{'F', 'H', proto.Version, byte(proto.OpGet), 0, 0, 0, 0, byte(len(name))}, name...)
	}
	tests := []struct {
		name string
		msg  []byte
		want proto.Code
	}{
		{name: "255 bytes, not held", msg: rawGet(max), want: proto.CodeNotFound},
		{name: "empty", msg: rawGet(""), want: proto.CodeInvalidName},
		{name: "colon", msg: rawGet("a:b"), want: proto.CodeInvalidName},
		{name: "leading dot", msg: rawGet(".a"), want: proto.CodeInvalidName},
		{name: "leading slash", msg: rawGet("/a"), want: proto.CodeInvalidName},
		{name: "space", msg: rawGet("a b"), want: proto.CodeInvalidName},
		{name: "NUL", msg: rawGet("a\x00"), want: proto.CodeInvalidName},
		{name: "newline", msg: rawGet("a\n"), want: proto.CodeInvalidName},
		{name: "UTF-8", msg: rawGet("caf\u00e9"), want: proto.CodeInvalidName},
		{name: "255 bytes with a bad one", msg: rawGet(max[:254] + ":"), want: proto.CodeInvalidName},
		{name: "length says 255, 254 follow", msg: rawGet(max)[:9+254], want: proto.CodeBadRequest},
		{name: "length says 10, 255 follow", msg: append(rawGet("0123456789"), max...), want: proto.CodeBadRequest},
		{name: "list after 255 bytes", msg: append([]byte{'F', 'H', proto.Version, byte(proto.OpList), 0, 0, 0, 0, 255}, max...), want: proto.CodeOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, fds := c.RoundTrip(tt.msg)
			if rep.Code != tt.want || fds != 0 {
				t.Errorf("code %v (%s) with %d descriptors, want %v", rep.Code, rep.Message, fds, tt.want)
			}
		})
	}
	c.Close()
	// A name of exactly 255 bytes is held like any other.
	storeGet(t, h.c, max)
	if err := h.c.Delete(testCtx(t), max); err != nil {
		t.Fatal(err)
	}
	// The client refuses 256 before sending.
	if _, err := h.c.Store(testCtx(t), max+"n", testutil.ListenTCP(t), fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrInvalidName) {
		t.Errorf("store of a 256-byte name: %v, want ErrInvalidName", err)
	}
	h.check(t)
}

func TestHostileConcurrentOneName(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t)
	const (
		clients = 8
		rounds  = 150
	)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			c, err := fdholder.Dial(testCtx(t), h.path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				errs <- err
				return
			}
			defer ln.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for range rounds {
				ctx := testCtx(t)
				var err error
				switch rng.IntN(5) {
				case 0:
					_, err = c.Store(ctx, "hot", ln, fdholder.StoreOptions{})
				case 1:
					_, err = c.Store(ctx, "hot", ln, fdholder.StoreOptions{Replace: true})
				case 2:
					var f *os.File
					f, _, err = c.Take(ctx, "hot")
					if f != nil {
						f.Close()
					}
				case 3:
					var f *os.File
					f, _, err = c.Get(ctx, "hot")
					if f != nil {
						f.Close()
					}
				case 4:
					err = c.Delete(ctx, "hot")
				}
				if err != nil && !errors.Is(err, fdholder.ErrExists) && !errors.Is(err, fdholder.ErrNotFound) {
					errs <- err
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
	if err := h.c.Delete(testCtx(t), "hot"); err != nil && !errors.Is(err, fdholder.ErrNotFound) {
		t.Fatal(err)
	}
	h.check(t)
}
