package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit and skips the
// test if that leaves fewer than need descriptors.
func raiseNoFile(t testing.TB, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	if lim.Cur < need {
		t.Fatalf("RLIMIT_NOFILE is %d; this test needs %d descriptors (ulimit -n)", lim.Cur, need)
	}
}

// comparable drops the live queue figures, which are no metadata.
func comparable(es []fdholder.Entry) []fdholder.Entry {
	out := make([]fdholder.Entry, len(es))
	for i, e := range es {
		e.HasQueue, e.Queued, e.Backlog = false, 0, 0
		out[i] = e
	}
	return out
}

// TestTransferThousands transfers 3,000 TCP listeners (and a Unix one) with
// fdclient transfer from one holder to another: all arrive, in batches of
// at most 253 descriptors, with the same metadata, and every transferred
// descriptor accepts a connection made to its address. A second transfer
// without --replace is refused entry by entry (exit 4); with --replace it
// goes through.
func TestTransferThousands(t *testing.T) {
	const n = 3000
	testutil.CheckLeaks(t)
	// Both holders run in this process: n held twice, plus slack.
	raiseNoFile(t, 2*n+512)
	src, dst := holdertest.Start(t), holdertest.Start(t)
	c := dialHolder(t, src.Path)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		opts := fdholder.StoreOptions{}
		if i%100 == 0 {
			opts.TTL = time.Hour
		}
		_, err = c.Store(ctx, fmt.Sprintf("svc/%04d", i), ln.(syscall.Conn), opts)
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	uln, err := net.Listen("unix", filepath.Join(testutil.ShortDir(t), "u.sock"))
	if err != nil {
		t.Fatal(err)
	}
	uln.(*net.UnixListener).SetUnlinkOnClose(false) // the held copy keeps listening there
	if _, err := c.Store(ctx, "svc/unix", uln.(syscall.Conn), fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	uln.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(ctx, "other", other.(syscall.Conn), fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	other.Close()

	r := mustRun(t, src.Path, "transfer", "--names", "svc/*", "--to", dst.Path)
	if want := fmt.Sprintf("copied %d entries to %s\n", n+1, dst.Path); r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}

	srcList, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := dialHolder(t, dst.Path)
	dstList, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// "other" sorts first and does not match svc/*.
	if srcList[0].Name != "other" {
		t.Fatalf("first source entry %q, want other", srcList[0].Name)
	}
	want := comparable(srcList[1:])
	got := comparable(dstList)
	if len(got) != n+1 {
		t.Fatalf("destination holds %d entries, want %d", len(got), n+1)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}

	// Every descriptor the destination holds is the very socket: a
	// connection to the address is accepted on the destination's copy.
	for _, e := range dstList {
		f, _, err := d.Get(ctx, e.Name)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		network := "tcp"
		if e.Network == "unix" {
			network = "unix"
		}
		conn, err := net.DialTimeout(network, e.Address, 5*time.Second)
		if err != nil {
			ln.Close()
			t.Fatalf("%s: dial %s: %v", e.Name, e.Address, err)
		}
		ln.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(5 * time.Second))
		s, err := ln.Accept()
		if err != nil {
			t.Fatalf("%s: accept: %v", e.Name, err)
		}
		s.Close()
		conn.Close()
		ln.Close()
	}

	// Again, without --replace: every entry is refused as already held.
	r = fdclient(t, src.Path, "transfer", "--names", "svc/000*", "--to", dst.Path)
	if r.code != exitExists || r.stdout != fmt.Sprintf("copied 0 entries to %s\n", dst.Path) ||
		!strings.Contains(r.stderr, `10 entries not copied: transfer "svc/0000": name already held`) {
		t.Errorf("transfer onto held names: %v", r)
	}
	r = mustRun(t, src.Path, "transfer", "--replace", "--names", "svc/000*", "--to", dst.Path)
	if want := fmt.Sprintf("copied 10 entries to %s\n", dst.Path); r.stdout != want {
		t.Errorf("with --replace: stdout %q, want %q", r.stdout, want)
	}
}
