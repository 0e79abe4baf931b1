package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

func isLimit(r record) bool {
	return r.str("msg") == "request" && r.str("result") == "limit reached"
}

func TestEntryLimits(t *testing.T) {
	needRoot(t)
	testutil.CheckLeaks(t)
	path := sharedSocket(t)
	pol := writePolicy(t, filepath.Dir(path), "[[rule]]\nuid = 4000\nops = [\"store\", \"delete\"]\nnames = [\"m/*\"]\n")
	d := startServing(t, daemonOpts{socket: path, args: []string{"--socket-mode", "0666", "--policy", pol,
		"--max-entries", "6", "--max-entries-per-uid", "2"}})
	c := dial(t, path)
	for _, name := range []string{"keep/a", "keep/b", "keep/c"} {
		storeNew(t, c, name)
	}
	ctx := testCtx(t)
	ln := testutil.ListenTCP(t)
	steps := []struct {
		who  cred
		args []string
		want int
		msg  string // in the client's error
	}{
		{who: member, args: []string{"store", "m/1"}, want: peerOK},
		{who: member, args: []string{"store", "m/2"}, want: peerOK},
		{who: member, args: []string{"store", "m/3"}, want: peerLimit, msg: "uid 4000 holds its maximum of 2 entries"},
		{who: member, args: []string{"store", "m/1", "replace"}, want: peerOK}, // a replace adds nothing
		{who: asRoot, args: []string{"store", "r/1"}, want: peerOK},            // root: no per-uid limit; 6 held
		{who: asRoot, args: []string{"store", "r/2"}, want: peerLimit, msg: "the holder holds its maximum of 6 entries"},
		{who: asRoot, args: []string{"store", "r/1", "replace"}, want: peerOK},
		{who: member, args: []string{"delete", "m/2"}, want: peerOK},
		{who: asRoot, args: []string{"store", "r/2"}, want: peerOK},
		{who: member, args: []string{"store", "m/2"}, want: peerLimit, msg: "maximum of 6 entries"},
	}
	for i, st := range steps {
		r := peerDo(t, st.who, path, st.args...)
		if r.code != st.want || !strings.Contains(r.stderr, st.msg) {
			t.Fatalf("step %d, %s %v: exit %d (%s), want %d %q", i, st.who.name, st.args, r.code, strings.TrimSpace(r.stderr), st.want, st.msg)
		}
	}
	// The Go client sees ErrLimit.
	if _, err := c.Store(ctx, "r/3", ln, fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrLimit) {
		t.Errorf("store over the limit: %v, want ErrLimit", err)
	}
	// The log is read in the order it was written: once the last refusal's
	// line (the Go client's r/3) is in, every earlier one is too.
	d.waitFor("the per-uid limit's audit line", func(r record) bool {
		return isLimit(r) && r.str("op") == "store" && r.str("name") == "m/3" && r.num("peer_uid") == 4000
	})
	d.waitFor("the last refusal's audit line", func(r record) bool {
		return isLimit(r) && r.str("op") == "store" && r.str("name") == "r/3"
	})
	if n := d.count(isLimit); n != 4 {
		t.Errorf("%d limit lines logged, want 4", n)
	}
	es, err := c.List(ctx)
	if err != nil || len(es) != 6 {
		t.Errorf("list: %d entries, %v; want 6", len(es), err)
	}
	d.stop()
}

// prlimitNoFile sets the RLIMIT_NOFILE soft limit of process pid
// (prlimit(2); the test is root or the process's owner) and returns the
// limit it had.
func prlimitNoFile(t testing.TB, pid int, soft uint64) unix.Rlimit {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	lim := unix.Rlimit{Cur: soft, Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("prlimit %d: %v", soft, err)
	}
	return old
}

func TestDescriptorReserve(t *testing.T) {
	testutil.CheckLeaks(t)
	const reserve = 16
	h := startHostile(t, "--fd-reserve", fmt.Sprint(reserve))
	d := h.d
	d.waitFor("the descriptor limit line", func(r record) bool {
		return r.str("msg") == "descriptor limit" && r.num("soft") == r.num("hard") && r.num("hard") > 0
	})
	// Room for a few stores above the reserve, then no more.
	const room = 8
	old := prlimitNoFile(t, d.pid(), uint64(h.before+reserve+room))
	defer unix.Prlimit(d.pid(), unix.RLIMIT_NOFILE, &old, nil)

	ctx := testCtx(t)
	ln := testutil.ListenTCP(t)
	stored := 0
	var err error
	for ; stored < 100; stored++ {
		if _, err = h.c.Store(ctx, fmt.Sprintf("fill/%02d", stored), ln, fdholder.StoreOptions{}); err != nil {
			break
		}
	}
	if !errors.Is(err, fdholder.ErrLimit) || !strings.Contains(err.Error(), fmt.Sprintf("near its descriptor limit (RLIMIT_NOFILE %d, %d kept in reserve)", h.before+reserve+room, reserve)) {
		t.Fatalf("store %d: %v, want ErrLimit near the descriptor limit", stored, err)
	}
	// The holder counts its descriptors exactly near the limit; a
	// connection closing or opening meanwhile may move it by one.
	t.Logf("%d stores fitted above the reserve", stored)
	if stored < room-1 || stored > room {
		t.Errorf("%d stores succeeded, want %d (or one fewer)", stored, room)
	}
	d.waitFor("the reserve's audit line", func(r record) bool { return isLimit(r) && strings.Contains(r.str("error"), "descriptor limit") })
	// The reserve kept accept working: new connections are served.
	for i := range 5 {
		fresh := dial(t, h.path)
		if _, err := fresh.List(ctx); err != nil {
			t.Fatalf("new connection %d at the limit: %v", i, err)
		}
		fresh.Close()
	}
	for name, addr := range h.held {
		checkAccepts(t, h.c, name, addr)
	}
	for i := range stored {
		if err := h.c.Delete(ctx, fmt.Sprintf("fill/%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	unix.Prlimit(d.pid(), unix.RLIMIT_NOFILE, &old, nil)
	h.check(t)
}

func TestAcceptBackoffOnEMFILE(t *testing.T) {
	testutil.CheckLeaks(t)
	h := startHostile(t)
	d := h.d
	isBackoff := func(r record) bool { return r.str("msg") == "accept failed; backing off" }
	if _, err := h.c.List(testCtx(t)); err != nil { // h.c's connection is open
		t.Fatal(err)
	}
	// Not one descriptor left: accept(2) fails with EMFILE.
	limited := time.Now()
	old := prlimitNoFile(t, d.pid(), uint64(h.before))
	defer unix.Prlimit(d.pid(), unix.RLIMIT_NOFILE, &old, nil)

	// A client connects (the kernel queues it on the listener) and asks.
	waiting := holdertest.DialRaw(t, h.path, waitTimeout)
	waiting.Send(holdertest.Encode(t, proto.Request{Op: proto.OpList}))
	d.waitFor("a backoff line", func(r record) bool { return isBackoff(r) && strings.Contains(r.str("error"), "too many open files") })

	// Meanwhile the open connection is served, a held listener included,
	// until the backoff has reached its cap and kept it: two lines with a
	// backoff of 1s, the 9th and 10th, 2.3 s after the first; or until
	// there are more lines than the backoff allows, for the checks below
	// to report.
	capped := func(r record) bool { return isBackoff(r) && r.str("backoff") == "1s" }
	tooMany := func() bool { return d.count(isBackoff) > 10+int(time.Since(limited)/time.Second) }
	timeout := time.After(waitTimeout)
	for {
		_, changed := d.log.snapshot()
		checkAccepts(t, h.c, "keep/a", h.held["keep/a"])
		if d.count(capped) >= 2 || tooMany() {
			break
		}
		select {
		case <-changed:
		case <-d.exited:
			t.Fatalf("exited (%v) while backing off", d.err)
		case <-timeout:
			t.Fatalf("%d backoff lines, none at 1s twice, within %v", d.count(isBackoff), waitTimeout)
		}
	}
	// It backs off instead of spinning: 5ms, doubling, up to 1s between
	// attempts. The holder's own lines show it: each backoff is twice the
	// one before (capped), and each line comes at least the backoff before
	// it after that line (both ts are the holder's clock, and a wait lasts
	// at least its duration, however slow the machine). A spinning loop
	// would log thousands of lines microseconds apart.
	lines, _ := d.log.snapshot()
	var prevTS time.Time
	var prev time.Duration
	for _, r := range records(lines) {
		if !isBackoff(r) {
			continue
		}
		backoff, err := time.ParseDuration(r.str("backoff"))
		if err != nil {
			t.Fatalf("backoff line %v: %v", r, err)
		}
		ts, err := time.Parse(time.RFC3339Nano, r.str("ts"))
		if err != nil {
			t.Fatalf("backoff line %v: %v", r, err)
		}
		if want := min(max(2*prev, 5*time.Millisecond), time.Second); backoff != want {
			t.Fatalf("backoff %v after %v, want %v", backoff, prev, want)
		}
		if gap := ts.Sub(prevTS); prev > 0 && gap < prev {
			t.Fatalf("an accept failure %v after the one before, which backed off %v: the accept loop spins", gap, prev)
		}
		prev, prevTS = backoff, ts
	}
	// And the count follows the time that really passed: 8 attempts in
	// the first 1.3s, then one a second.
	elapsed := time.Since(limited)
	if n, most := d.count(isBackoff), 10+int(elapsed/time.Second); n > most {
		t.Errorf("%d accept failures logged in %v (at most %d with the backoff): the accept loop spins", n, elapsed.Round(time.Millisecond), most)
	}
	// Descriptors back: the queued client is accepted and answered.
	unix.Prlimit(d.pid(), unix.RLIMIT_NOFILE, &old, nil)
	rep, fds, ok := waiting.Recv()
	if !ok || rep.Code != proto.CodeOK || rep.Op != proto.OpList || fds != 0 {
		t.Fatalf("the queued client got %+v (ok %v), want its list", rep, ok)
	}
	waiting.Close()
	h.check(t)
}
