package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
// entries the first list page holds.
func fillList(t testing.TB, c *fdholder.Client) int {
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
	return len(rep.Entries)
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

// stallQuiet is how long the holder must begin no request for the test to
// take it as blocked; a list page takes well under a millisecond to build.
const stallQuiet = 300 * time.Millisecond

// startStalled starts a holder full of entries, with a connection whose
// holder is blocked sending a reply. It returns the holder, the connection,
// the size of a page, the list requests logged before, and how many of the
// pipelined requests the holder has begun.
func startStalled(t *testing.T) (d *daemon, path string, pc *proto.Conn, page, before, begun int) {
	t.Helper()
	path = socketPath(t)
	d = startServing(t, daemonOpts{socket: path})
	c := dial(t, path)
	page = fillList(t, c)
	c.Close()
	// fillList's own list request: its log line may still be on its way
	// through the pipe.
	before = 1
	d.waitFor("the first list", func(r record) bool { return isList(r) })
	pc = pipelineLists(t, path)
	begun = d.waitStalled(isList, before, stallQuiet) - before
	if begun >= pipelined {
		t.Fatalf("the holder answered all %d requests without blocking: nothing is in flight", pipelined)
	}
	return d, path, pc, page, before, begun
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
