package main

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/testutil"
)

// TestUpgradeAboveHalfTheLimit (issue 8, defect 7): 600 entries, each its
// own socket, under RLIMIT_NOFILE 1000. An upgrade passes the held sockets
// under their own numbers and the metadata inside the hand-off list, so it
// needs no descriptor per entry: it succeeds, and the new binary recovers
// every entry (recovery too hands each socket over rather than
// duplicating it). It used to fail (memfd_create: too many open files) and
// close every client at each try.
func TestUpgradeAboveHalfTheLimit(t *testing.T) {
	testutil.CheckLeaks(t)
	const entries, nofile = 600, 1000
	dir := testutil.ShortDir(t)
	exe := copyBinary(t, dir)
	path := filepath.Join(dir, "h.sock")
	d := startServing(t, daemonOpts{socket: path, bin: exe, args: []string{"--log-level", "info"},
		wrapper: []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile)}})
	c := dial(t, path)
	ctx := testCtx(t)
	for i := range entries {
		ln := testutil.ListenTCP(t)
		if _, err := c.Store(ctx, fmt.Sprintf("e/%03d", i), ln, fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
		ln.Close()
	}
	before, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGUSR2)
	r := d.waitFor("the upgrade", func(r record) bool {
		return isRecovered("upgrade")(r) || r.str("msg") == "upgrade failed; serving again with every entry"
	})
	if r.str("msg") != "recovered" || int(r.num("entries")) != entries || r.num("lost") != 0 {
		t.Fatalf("upgrade: %v, want %d entries recovered", r, entries)
	}
	after, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("%d entries after the upgrade, want %d", len(after), len(before))
	}
}
