package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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
	h := startHostile(t, "--request-timeout", "200ms")
	dump := holdertest.Encode(t, proto.Request{Op: proto.OpDump, Pattern: "keep/*"})

	t.Run("after a quiet spell", func(t *testing.T) {
		c := holdertest.DialRaw(t, h.path, waitTimeout)
		if rep, fds := c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "keep/a"})); rep.Code != proto.CodeOK || fds != 1 {
			t.Fatalf("get: %v (%s), %d descriptors", rep.Code, rep.Message, fds)
		}
		// Not a wait for a fact: the quiet spell is the condition under
		// test, longer than the request timeout and its slack.
		time.Sleep(400 * time.Millisecond)
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

	f := startFlood(t, nobody, path, "get", "web", "1", "2000")
	d.signal(syscall.SIGUSR2)
	d.waitFor("the upgrade", isRecovered("upgrade"))
	if n := d.count(func(r record) bool { return r.str("msg") == "upgrade: requests still in flight were cut off" }); n != 0 {
		t.Errorf("the upgrade waited for the peer that does not read: %d cut-off lines", n)
	}
	d.waitFor("the non-reader dropped", func(r record) bool {
		return r.str("msg") == "stopping: a reply did not fit at a client that does not read; closing the connection" && r.num("peer_uid") == float64(nobody.uid)
	})
	f.stop()
	if _, _, err := c.Get(testCtx(t), "web"); err != nil {
		t.Errorf("get after the upgrade: %v", err)
	}
}
