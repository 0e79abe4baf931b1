package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// How the shutdown tests get a request truly in flight: a client sends many
// list requests without reading a reply. Each reply is a full page (close
// to proto.MaxReplySize), so after a few of them the holder's send buffer
// (net.core.wmem_default, 208 KiB) is full and the holder blocks in
// sendmsg(2) in the middle of serving a request, until the client reads.
const (
	pipelined   = 64  // list requests sent at once: far more than fit
	listEntries = 300 // entries held: more than one page
	nameLen     = 200 // bytes per name, so that a page is large
)

// fillList stores listEntries entries with long names and returns how many
// entries the first list page holds, and its size on the wire.
func fillList(t testing.TB, c *fdholder.Client) (page, size int) {
	t.Helper()
	ctx := testCtx(t)
	ln := testutil.ListenTCP(t)
	for i := range listEntries {
		name := fmt.Sprintf("e%03d-%s", i, strings.Repeat("x", nameLen-5))
		if _, err := c.Store(ctx, name, ln, fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ln.Close()
	// The size of a page, as the holder's own pager decides it.
	pc, err := proto.Dial(ctx, c.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	req, err := proto.AppendRequest(nil, &proto.Request{Op: proto.OpList})
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Send(req, nil); err != nil {
		t.Fatal(err)
	}
	rep := recvList(t, pc)
	if rep.Flags&proto.FlagMore == 0 {
		t.Fatalf("the first page holds all %d entries; want several pages", len(rep.Entries))
	}
	// Encodings are canonical: the reply re-encoded is the message received.
	b, err := proto.AppendReply(nil, &rep)
	if err != nil {
		t.Fatal(err)
	}
	return len(rep.Entries), len(b)
}

func recvList(t testing.TB, pc *proto.Conn) proto.Reply {
	t.Helper()
	buf := make([]byte, proto.MaxReplySize)
	pc.SetReadDeadline(time.Now().Add(waitTimeout))
	n, fd, err := pc.Recv(buf)
	if fd != nil {
		fd.Close()
		t.Error("a list reply carried a descriptor")
	}
	if err != nil {
		t.Fatal(err)
	}
	rep, err := proto.DecodeReply(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil || rep.Op != proto.OpList {
		t.Fatalf("reply %v: %v, want a list page", rep.Op, err)
	}
	return rep
}

// pipelineLists sends pipelined list requests on a new connection and
// reads no reply.
func pipelineLists(t testing.TB, path string) *proto.Conn {
	t.Helper()
	pc, err := proto.Dial(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	req, err := proto.AppendRequest(nil, &proto.Request{Op: proto.OpList})
	if err != nil {
		t.Fatal(err)
	}
	for range pipelined {
		if err := pc.Send(req, nil); err != nil {
			t.Fatal(err)
		}
	}
	return pc
}

// readLists reads list replies until the holder hangs up, checks that each
// is a complete first page of page entries, and returns how many arrived.
//
// The holder closes the connection with pipelined requests still unread in
// its socket, and for that the kernel sets ECONNRESET on the client's
// socket (unix_release_sock), which the next recvmsg(2) reports and clears
// (sock_error) even though replies are still queued: the replies that the
// holder sent come after it, then the end of the stream.
func readLists(t testing.TB, pc *proto.Conn, page int) int {
	t.Helper()
	buf := make([]byte, proto.MaxReplySize)
	pc.SetReadDeadline(time.Now().Add(waitTimeout))
	reset := false
	for got := 0; ; {
		n, fd, err := pc.Recv(buf)
		if fd != nil {
			fd.Close()
			t.Error("a list reply carried a descriptor")
		}
		if errors.Is(err, syscall.ECONNRESET) && !reset {
			reset = true
			continue
		}
		if proto.IsClosed(err) {
			return got
		}
		got++
		if err != nil {
			t.Fatalf("reply %d: %v", got, err)
		}
		rep, err := proto.DecodeReply(buf[:n])
		if err != nil {
			t.Fatalf("reply %d: %v", got, err)
		}
		if rep.Op != proto.OpList || rep.Err() != nil || len(rep.Entries) != page || rep.Flags&proto.FlagMore == 0 {
			t.Fatalf("reply %d: %v %v with %d entries, want a full page of %d", got, rep.Op, rep.Err(), len(rep.Entries), page)
		}
	}
}

func isList(r record) bool { return r.str("msg") == "request" && r.str("op") == "list" }

// startStalled starts a holder full of entries, with a connection whose
// holder is blocked sending a reply. It returns the holder, the connection,
// the size of a page, the list requests logged before, and how many of the
// pipelined requests the holder has begun.
func startStalled(t *testing.T) (d *daemon, path string, pc *proto.Conn, page, before, begun int) {
	t.Helper()
	needSS(t)
	path = socketPath(t)
	d = startServing(t, daemonOpts{socket: path})
	c := dial(t, path)
	page, size := fillList(t, c)
	c.Close()
	// fillList's own list request: its log line may still be on its way
	// through the pipe.
	before = 1
	d.waitFor("the first list", func(r record) bool { return isList(r) })
	pc = pipelineLists(t, path)
	begun = d.waitBlocked(pc, size, before)
	if begun >= pipelined {
		t.Fatalf("the holder answered all %d requests without blocking: nothing is in flight", pipelined)
	}
	return d, path, pc, page, before, begun
}

// waitBlocked waits until the holder is blocked in the middle of a request
// on pc, and returns how many requests it has begun since the first before
// list lines. Two facts decide, not a pause in the log:
//   - the holder's end of the connection has as many bytes allocated for
//     sending (replies queued at the client count against it) as its send
//     buffer holds, so sendmsg(2) cannot proceed until the client reads
//     (sock_alloc_send_pskb waits while sk_wmem_alloc >= sk_sndbuf; ss -xm
//     shows them as t and tb);
//   - the holder has logged (it logs a request before sending its reply)
//     more requests than there are replies queued at the client (all the
//     same size): one request is begun and its reply is not out.
func (d *daemon) waitBlocked(pc *proto.Conn, replySize, before int) int {
	d.t.Helper()
	ino := socketInode(d.t, pc.UnixConn()) // the number ss shows
	timeout := time.After(waitTimeout)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	var client, holder unixSock
	for {
		_, changed := d.log.snapshot()
		begun := d.count(isList) - before
		client, holder = connSocks(d.t, ino)
		if client.recvQ%replySize != 0 {
			d.t.Fatalf("%d bytes queued at the client: not whole replies of %d", client.recvQ, replySize)
		}
		if holder.blocked() && begun > client.recvQ/replySize {
			return begun
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-d.exited:
			d.t.Fatalf("exited (%v) while serving", d.err)
		case <-timeout:
			d.t.Fatalf("the holder did not block within %v: %d requests begun, client %+v, holder %+v",
				waitTimeout, begun, client, holder)
		}
	}
}

// unixSock is what ss(8) reports about one AF_UNIX socket.
type unixSock struct {
	inode, peer  uint64
	local        string // the path the socket (or, accepted, its listener) is bound to; "*" for none
	recvQ        int    // bytes queued to be read (unix_inq_len)
	wmem, sndbuf int    // skmem t and tb: bytes allocated for sending, and the limit
}

// blocked reports whether sendmsg(2) on s waits for its peer to read:
// sock_alloc_send_pskb waits while sk_wmem_alloc >= sk_sndbuf.
func (s unixSock) blocked() bool { return s.sndbuf > 0 && s.wmem >= s.sndbuf }

// unixSocks returns every AF_UNIX socket ss -xam shows.
func unixSocks(t testing.TB) []unixSock {
	t.Helper()
	out, err := exec.Command("ss", "-x", "-a", "-m", "-H").Output()
	if err != nil {
		t.Fatalf("ss -xamH: %v", err)
	}
	var socks []unixSock
	for _, line := range strings.Split(string(out), "\n") {
		// Netid State Recv-Q Send-Q Local Port Peer Port skmem:(...)
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[8], "skmem:(") {
			continue
		}
		s := unixSock{local: f[4]}
		s.recvQ, _ = strconv.Atoi(f[2])
		s.inode, _ = strconv.ParseUint(f[5], 10, 64)
		s.peer, _ = strconv.ParseUint(f[7], 10, 64)
		for _, kv := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(f[8], "skmem:("), ")"), ",") {
			switch {
			case strings.HasPrefix(kv, "tb"):
				s.sndbuf, _ = strconv.Atoi(kv[2:])
			case strings.HasPrefix(kv, "t"):
				s.wmem, _ = strconv.Atoi(kv[1:])
			}
		}
		socks = append(socks, s)
	}
	return socks
}

// connSocks returns the socket with inode ino and its peer, from ss -xm.
func connSocks(t testing.TB, ino uint64) (self, peer unixSock) {
	t.Helper()
	socks := unixSocks(t)
	found := 0
	for _, s := range socks {
		switch {
		case s.inode == ino:
			self = s
			found++
		case s.peer == ino:
			peer = s
			found++
		}
	}
	if found != 2 || self.peer != peer.inode || self.inode != peer.peer {
		t.Fatalf("ss does not show socket %d and its peer: %+v %+v\n%+v", ino, self, peer, socks)
	}
	return self, peer
}

// waitSendBlocked waits until the holder is blocked sending on one of its
// connections (ss shows one of the sockets open in the holder blocked), a
// fact of the kernel rather than a guess at how long a flood takes.
func (d *daemon) waitSendBlocked() {
	d.t.Helper()
	needSS(d.t)
	timeout := time.After(waitTimeout)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		mine := d.sockets()
		for _, s := range unixSocks(d.t) {
			if mine[fmt.Sprintf("socket:[%d]", s.inode)] && s.blocked() {
				return
			}
		}
		select {
		case <-poll.C:
		case <-d.exited:
			d.t.Fatalf("exited (%v) while serving", d.err)
		case <-timeout:
			d.t.Fatalf("the holder was not blocked sending on any connection within %v", waitTimeout)
		}
	}
}

// needSS skips (or, with peers required, fails) a test that reads the
// sockets' queues when ss(8) is missing.
func needSS(t testing.TB) {
	t.Helper()
	_, err := exec.LookPath("ss")
	testutil.NeedPeer(t, err == nil, "ss (iproute2) reads the sockets' queues: %v", err)
}

func TestSIGTERMFinishesRequestInFlight(t *testing.T) {
	testutil.CheckLeaks(t)
	d, path, pc, page, before, begun := startStalled(t)

	d.signal(syscall.SIGTERM)
	d.waitFor("shutting down", func(r record) bool { return r.str("msg") == "shutting down" })
	got := readLists(t, pc, page)
	if code := d.wait(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	answered := d.count(isList) - before
	if got < begun {
		t.Errorf("%d replies arrived; the holder had begun %d requests when SIGTERM came", got, begun)
	}
	if got != answered {
		t.Errorf("the holder began %d requests and %d replies arrived: every request begun must be answered", answered, got)
	}
	if r := d.waitFor("stopped", func(r record) bool { return r.str("msg") == "stopped" }); r["forced"] != false || r.num("entries_closed") != listEntries {
		t.Errorf("shutdown line = %v, want %d entries closed, not forced", r, listEntries)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after exit: lstat %s: %v, want the socket file removed", path, err)
	}
}

func TestSecondSignalForcesExit(t *testing.T) {
	testutil.CheckLeaks(t)
	d, path, pc, page, before, _ := startStalled(t)

	d.signal(syscall.SIGTERM)
	d.waitFor("shutting down", func(r record) bool { return r.str("msg") == "shutting down" })
	// The holder now waits (up to its grace period) for the reply the
	// client does not read. A second signal ends the wait.
	d.signal(syscall.SIGINT)
	d.waitFor("the second signal", func(r record) bool { return strings.HasPrefix(r.str("msg"), "second signal") })
	if code := d.wait(); code != 1 {
		t.Errorf("exit status %d after a second signal, want 1", code)
	}
	if !strings.Contains(d.log.String(), "fdholderd: shutdown cut short by a second signal") {
		t.Errorf("stderr does not say why the exit status is 1")
	}
	got := readLists(t, pc, page)
	answered := d.count(isList) - before
	if got != answered-1 {
		t.Errorf("%d replies arrived for %d requests begun; want all but the one cut short", got, answered)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after exit: lstat %s: %v, want the socket file removed", path, err)
	}
}
