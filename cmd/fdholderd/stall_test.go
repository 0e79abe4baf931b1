package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// Issue 8, defects 5 and 6: replies that wait on a peer that does not read.

// TestHostileDumpDeadline: a dump reply is sent under the request deadline
// like every other reply. A dump after a quiet spell longer than
// --request-timeout is answered (it used to meet the deadline armed for an
// earlier reply, fail at once, and be audited ok); and a connection that
// pipelines dumps and never reads is closed once the deadline passes (it
// used to stay open, keeping deleted sockets open in its unread replies).
func TestHostileDumpDeadline(t *testing.T) {
	testutil.CheckLeaks(t)
	const requestTimeout = time.Second
	h := startHostile(t, "--request-timeout", requestTimeout.String())
	dump := holdertest.Encode(t, proto.Request{Op: proto.OpDump, Pattern: "keep/*"})

	t.Run("after a quiet spell", func(t *testing.T) {
		c := holdertest.DialRaw(t, h.path, waitTimeout)
		if rep, fds := c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "keep/a"})); rep.Code != proto.CodeOK || fds != 1 {
			t.Fatalf("get: %v (%s), %d descriptors", rep.Code, rep.Message, fds)
		}
		// Not a wait for a fact: the quiet spell is the condition under
		// test, longer than the request timeout and its slack (9/8 of
		// it). It cannot pass by timing: it begins once the get's reply
		// is here, after the holder armed that reply's deadline, so that
		// deadline has passed when the dump arrives. It could fail by
		// timing only if the holder took the whole timeout between the
		// dump's arrival and its send of a small reply to a reader: 1s,
		// not 200ms, keeps that far beyond a busy machine's stalls.
		time.Sleep(requestTimeout + requestTimeout/4)
		rep, fds := c.RoundTrip(dump)
		if rep.Code != proto.CodeOK || fds != len(h.held) {
			t.Errorf("dump after a quiet spell: %v (%s), %d descriptors; want ok with %d", rep.Code, rep.Message, fds, len(h.held))
		}
		c.Close()
	})

	t.Run("pipelined and never read", func(t *testing.T) {
		c := holdertest.DialRaw(t, h.path, waitTimeout)
		for range 50 {
			if !c.Send(dump) {
				break
			}
		}
		h.d.waitFor("the dump's timeout", func(r record) bool {
			return r.str("msg") == "reply timed out: the client does not read; closing the connection" && r.str("op") == "dump"
		})
		h.d.waitFor("the dump audited as not delivered", func(r record) bool {
			return r.str("msg") == "request" && r.str("op") == "dump" && r.str("result") == "not delivered"
		})
		c.Close()
	})
	h.check(t)
}

// TestUpgradeWaitsForNoNonReader: a uid granted nothing pipelines requests
// on a connection and never reads the refusals, so the holder blocks
// sending to it; an upgrade (SIGUSR2) then drops that connection instead
// of waiting for it (it used to wait out the whole grace period, 10 s,
// and every client with it, "requests still in flight were cut off").
func TestUpgradeWaitsForNoNonReader(t *testing.T) {
	needRoot(t)
	testutil.CheckLeaks(t)
	dir := testutil.ShortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := copyBinary(t, dir)
	path := filepath.Join(dir, "h.sock")
	// A request timeout far beyond the grace period: only the rule that
	// a stopping holder waits for no non-reader ends that connection.
	d := startServing(t, daemonOpts{socket: path, bin: exe, args: []string{"--socket-mode", "0666", "--request-timeout", "1h"}})
	c := dial(t, path)
	storeNew(t, c, "web")

	// The flood fills the peer's queue: the upgrade comes once ss shows
	// the holder blocked sending to the peer.
	stop := startFlood(t, nobody, path, "get", "web", "1", "2000")
	d.waitSendBlocked()
	d.signal(syscall.SIGUSR2)
	d.waitFor("the upgrade", isRecovered("upgrade"))
	if n := d.count(func(r record) bool { return r.str("msg") == "upgrade: requests still in flight were cut off" }); n != 0 {
		t.Errorf("the upgrade waited for the peer that does not read: %d cut-off lines", n)
	}
	stop()
	f, _, err := c.Get(testCtx(t), "web")
	if err != nil {
		t.Fatalf("get after the upgrade: %v", err)
	}
	f.Close()
}

var plain struct {
	once sync.Once
	dir  string
}

// plainBinary returns fdholderd built as shipped (without -race), next to
// the one TestMain built, building it on first use.
func plainBinary(t testing.TB) string {
	t.Helper()
	plain.once.Do(func() {
		dir := filepath.Join(filepath.Dir(binary), "plain")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		testutil.BuildShipped(t, dir, "fdholderd")
		plain.dir = dir
	})
	if plain.dir == "" {
		t.Fatal("building fdholderd without -race failed in an earlier test")
	}
	return filepath.Join(plain.dir, "fdholderd")
}

// rssKiB returns the resident set of process pid (proc(5), VmRSS).
func rssKiB(t testing.TB, pid int) int { return procStatus(t, pid, "VmRSS") }

// procThreads returns the number of threads of process pid (proc(5)).
func procThreads(t testing.TB, pid int) int { return procStatus(t, pid, "Threads") }

// procStatus returns the number in field of /proc/PID/status (proc(5)),
// without its unit.
func procStatus(t testing.TB, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/PID/status", field)
	return 0
}

// TestIdleConnectionsKeepNoPages (issue 8, defect 8): connections that
// each read one full list page and then stay open keep no page buffer
// (it used to be kept per connection: 1,000 idle connections after one
// list each of 18,500 entries held 330 MB), and no thread: they wait in
// the netpoller, all but a bound few after their hot wait (proto.HotWait;
// a thread per connection once grew RSS by 27 MB here).
func TestIdleConnectionsKeepNoPages(t *testing.T) {
	testutil.CheckLeaks(t)
	const entries, conns = 300, 500
	path := socketPath(t)
	// Without -race: the race detector's state per goroutine outweighs
	// what is measured here.
	d := startServing(t, daemonOpts{socket: path, bin: plainBinary(t), args: []string{"--log-level", "info"}})
	c := dial(t, path)
	ln := testutil.ListenTCP(t)
	ctx := testCtx(t)
	long := strings.Repeat("n", 200)
	for i := range entries {
		if _, err := c.Store(ctx, fmt.Sprintf("%s/%03d", long, i), ln, fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	list := holdertest.Encode(t, proto.Request{Op: proto.OpList})
	// One connection first, so that what the runtime sets up once (and
	// the pool's first page) is counted before.
	warm := holdertest.DialRaw(t, path, waitTimeout)
	warm.RoundTrip(list)
	warm.Close()
	before, threadsBefore := rssKiB(t, d.pid()), procThreads(t, d.pid())
	var pages int
	for range conns {
		rc := holdertest.DialRaw(t, path, waitTimeout)
		rep, _ := rc.RoundTrip(list)
		pages += len(rep.Entries)
	}
	if pages < conns*100 {
		t.Fatalf("%d entries in %d first pages: the pages are not large", pages, conns)
	}
	grown := rssKiB(t, d.pid()) - before
	threads := procThreads(t, d.pid())
	t.Logf("RSS grew by %d KiB and threads from %d to %d for %d idle connections after a first page of %d entries each",
		grown, threadsBefore, threads, conns, pages/conns)
	// A thread per connection would be 500 more; the hot waits (at most
	// GOMAXPROCS-1) and the runtime's own (GC workers, a thread per
	// blocking write of the log) are a few.
	if limit := threadsBefore + 16; threads > limit {
		t.Errorf("%d threads for %d idle connections, want at most %d: idle connections keep threads", threads, conns, limit)
	}
	// Each connection's own state (goroutine stack, request buffer) is a
	// few KiB; a kept page and its encoding were over 100 KiB.
	if limit := conns * 40; grown > limit {
		t.Errorf("RSS grew by %d KiB for %d idle connections, want under %d KiB: they keep their pages", grown, conns, limit)
	}
}

// TestRefusalsRateLimited (issue 8, defect 10): a uid granted nothing asks
// 5,000 times; the holder writes at most a burst of 100 refusal lines plus
// 10 a second for it (it used to write one each: 100,000 lines in 3 s),
// and its own lines still come.
func TestRefusalsRateLimited(t *testing.T) {
	needRoot(t)
	testutil.CheckLeaks(t)
	path := sharedSocket(t)
	d := startServing(t, daemonOpts{socket: path, args: []string{"--socket-mode", "0666"}})
	start := time.Now()
	r := peerDo(t, nobody, path, "spam", "web", "5000")
	elapsed := time.Since(start)
	if r.code != 0 || r.stdout != "refused 5000\n" {
		t.Fatalf("peer spam: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	isRefusal := func(r record) bool {
		return r.str("msg") == "request" && r.num("peer_uid") == float64(nobody.uid) && r.str("result") == "permission denied"
	}
	// The lines of the last requests may still be on their way through
	// the pipe: a line about the holder's own stop comes after them all.
	d.signal(syscall.SIGTERM)
	d.waitFor("stopped", func(r record) bool { return r.str("msg") == "stopped" })
	lines := d.count(isRefusal)
	limit := 100 + int(10*elapsed.Seconds()) + 10
	t.Logf("%d refusal lines for 5,000 refusals in %v", lines, elapsed)
	if lines > limit {
		t.Errorf("%d refusal lines in %v, want at most %d", lines, elapsed, limit)
	}
	if lines < 100 {
		t.Errorf("%d refusal lines, want the burst of 100 at least", lines)
	}
}
