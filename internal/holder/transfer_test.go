package holder_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// TestDumpPages stores more entries than one dump reply carries and pages
// through them with a pattern: every matching entry comes exactly once,
// with its descriptor, in batches of at most proto.MaxBatchEntries.
func TestDumpPages(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := holdertest.DialRaw(t, h.Path, 5*time.Second)
	const n = 300
	ln := tcpListener(t)
	for i := range n {
		if rep, _ := c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: fmt.Sprintf("svc/%03d", i)}), ln); rep.Code != proto.CodeOK {
			t.Fatal(rep.Err())
		}
	}
	if rep, _ := c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "other"}), ln); rep.Code != proto.CodeOK {
		t.Fatal(rep.Err())
	}
	var names []string
	pages := 0
	after := ""
	for {
		rep, fds := c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpDump, Name: after, Pattern: "svc/*"}))
		if rep.Code != proto.CodeOK {
			t.Fatal(rep.Err())
		}
		pages++
		if fds != len(rep.Entries) || len(rep.Entries) > proto.MaxBatchEntries {
			t.Fatalf("page %d: %d entries, %d descriptors", pages, len(rep.Entries), fds)
		}
		for _, e := range rep.Entries {
			names = append(names, e.Name)
		}
		if rep.Flags&proto.FlagMore == 0 {
			break
		}
		after = rep.Entries[len(rep.Entries)-1].Name
	}
	if len(names) != n || pages != 2 {
		t.Errorf("%d names in %d pages, want %d in 2", len(names), pages, n)
	}
	for i, name := range names {
		if name != fmt.Sprintf("svc/%03d", i) {
			t.Fatalf("name %d = %q", i, name)
		}
	}
	if rep, _ := c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpDump, Pattern: "[x"})); rep.Code != proto.CodeBadRequest {
		t.Errorf("a malformed pattern: %v, want bad request", rep.Err())
	}
}

// TestLoad loads a batch with one good entry and several bad ones: each
// gets its own result, the good one is held with the metadata it carried
// (network and address from the kernel), and no descriptor leaks.
func TestLoad(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := holdertest.DialRaw(t, h.Path, 5*time.Second)
	ln := tcpListener(t)
	stored := time.Unix(1700000000, 5)
	entries := []proto.Entry{
		{Name: "good", Network: "lies", Address: "lies", UID: 33, GID: 44, PID: 55, StoredAt: stored, ExpiresAt: time.Now().Add(time.Hour).Round(0)},
		{Name: "bad:name", StoredAt: stored},
		{Name: "pipe", StoredAt: stored},
		{Name: "expired", StoredAt: stored, ExpiresAt: time.Unix(1, 0)},
		{Name: "good", StoredAt: stored}, // held by then, no replace
	}
	msg := holdertest.Encode(t, proto.Request{Op: proto.OpLoad, Entries: entries})
	rep, fds := c.RoundTrip(msg, ln, ln, pipeFD(t), ln, ln)
	if rep.Code != proto.CodeOK || fds != 0 {
		t.Fatalf("load: %v, %d descriptors", rep.Err(), fds)
	}
	want := []proto.Code{proto.CodeOK, proto.CodeInvalidName, proto.CodeNotSocket, proto.CodeNotFound, proto.CodeExists}
	for i, r := range rep.Results {
		if r.Code != want[i] {
			t.Errorf("result %d (%s) = %v %q, want %v", i, entries[i].Name, r.Code, r.Message, want[i])
		}
	}
	if len(rep.Results) != len(want) {
		t.Fatalf("%d results, want %d", len(rep.Results), len(want))
	}
	get, _ := c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpGet, Name: "good"}))
	e := get.Entry
	if e.Network != "tcp" || !strings.HasPrefix(e.Address, "127.0.0.1:") || !e.Listening ||
		e.UID != 33 || e.GID != 44 || e.PID != 55 || !e.StoredAt.Equal(stored) || !e.ExpiresAt.Equal(entries[0].ExpiresAt) {
		t.Errorf("loaded entry = %+v", e)
	}

	// The count of descriptors must match the count of entries.
	rep, _ = c.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpLoad, Entries: entries[:2]}), ln)
	if rep.Code != proto.CodeBadDescriptors {
		t.Errorf("2 entries, 1 descriptor: %v, want wrong number of descriptors", rep.Err())
	}
	// A load request may be larger than other requests; its size is
	// still bounded.
	big := make([]byte, proto.MaxLoadRequestSize+1)
	copy(big, msg)
	if rep, _ := c.RoundTrip(big); rep.Code != proto.CodeTooLarge {
		t.Errorf("oversized load: %v, want too large", rep.Err())
	}
}
