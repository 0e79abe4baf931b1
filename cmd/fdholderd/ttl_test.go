package main

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// TestTTLProtocolLimit: expiry times travel as Unix nanoseconds in a signed
// 64-bit field, which ends in April 2262. A ttl that would expire later
// (2200000h, 251 years) used to wrap: list showed 1693, transfer refused
// the entry as expired, an upgrade dropped it. Now it is refused on every
// path (fdclient, the Go client, a raw store the holder decides itself),
// nothing is held and no descriptor is left, and the longest ttl that fits
// comes back the same from list, fdclient list, transfer and an upgrade.
func TestTTLProtocolLimit(t *testing.T) {
	testutil.CheckLeaks(t)
	dir := testutil.ShortDir(t)
	exe := copyBinary(t, dir)
	path := filepath.Join(dir, "h.sock")
	d := startServing(t, daemonOpts{socket: path, bin: exe})
	c := dial(t, path)
	ctx := testCtx(t)
	const tooLong = 2200000 * time.Hour
	if _, err := c.List(ctx); err != nil { // the holder has accepted c
		t.Fatal(err)
	}
	fds := testutil.CountFDs(t, d.pid())

	refusals := []struct {
		name  string
		store func(t *testing.T) error
	}{
		{name: "fdclient listen", store: func(t *testing.T) error {
			r := runAs(t, asRoot, fdclientBin, "--socket", path, "listen", "--ttl", "2200000h", "far", "tcp:127.0.0.1:0")
			if r.code != 2 {
				t.Errorf("exit %d, want 2 (usage)", r.code)
			}
			return errors.New(r.stderr)
		}},
		{name: "go client", store: func(t *testing.T) error {
			_, err := c.Store(ctx, "far", testutil.ListenTCP(t), fdholder.StoreOptions{TTL: tooLong})
			if !errors.Is(err, fdholder.ErrTooLarge) {
				t.Errorf("Store: %v, want ErrTooLarge", err)
			}
			return err
		}},
		{name: "raw store", store: func(t *testing.T) error {
			raw := holdertest.DialRaw(t, path, waitTimeout)
			rep, _ := raw.RoundTrip(holdertest.Encode(t, proto.Request{Op: proto.OpStore, Name: "far", TTL: tooLong}), tcpFD(t))
			if rep.Code != proto.CodeTooLarge {
				t.Errorf("reply %v, want %v", rep.Code, proto.CodeTooLarge)
			}
			return errors.New(rep.Message)
		}},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.store(t)
			const want = "is too long: the entry would expire after 2262-04-11T23:47:16Z, the latest time the protocol carries; the longest ttl now is "
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v, want it to say %q", err, want)
			}
		})
	}
	if list, err := c.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after the refusals the holder lists %v (%v), want nothing", list, err)
	}
	if now := d.settledFDs(fds); now != fds {
		t.Errorf("fdholderd has %d descriptors open after the refusals, want %d as before", now, fds)
	}

	// The longest ttl that fits, give or take the hour the test may take.
	longest := time.Until(proto.MaxTime) - time.Hour
	e, err := c.Store(ctx, "far", testutil.ListenTCP(t), fdholder.StoreOptions{TTL: longest})
	if err != nil {
		t.Fatal(err)
	}
	want := e.ExpiresAt
	if want.UTC().Year() != 2262 {
		t.Fatalf("expiry %v, want one in 2262", want)
	}
	check := func(how string, c *fdholder.Client) {
		t.Helper()
		list, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || !list[0].ExpiresAt.Equal(want) {
			t.Errorf("%s: list %+v, want far expiring at %v", how, list, want)
		}
	}
	check("stored", c)
	// Compared as times: RFC 3339 allows the fraction with or without its
	// trailing zeros, and fdclient prints all nine digits.
	r := runAs(t, asRoot, fdclientBin, "--socket", path, "list", "--json")
	var listed []struct {
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); r.code != 0 || err != nil || len(listed) != 1 || !listed[0].ExpiresAt.Equal(want) {
		t.Errorf("fdclient list --json: exit %d (%v), %s%s; want expires_at %s", r.code, err, r.stdout, r.stderr, want.UTC().Format(time.RFC3339Nano))
	}

	dst := filepath.Join(dir, "dst.sock")
	startServing(t, daemonOpts{socket: dst})
	cd := dial(t, dst)
	res, err := c.Transfer(ctx, cd, fdholder.TransferOptions{})
	if err != nil || res.Copied != 1 {
		t.Fatalf("transfer: %+v, %v; want 1 copied", res, err)
	}
	check("transferred", cd)

	copyBinary(t, dir)
	d.signal(syscall.SIGUSR2)
	if r := d.waitFor("upgrade", isRecovered("upgrade")); r.num("entries") != 1 || r.num("expired") != 0 {
		t.Errorf("upgrade recovered %v", r)
	}
	check("upgraded", c)
	c.Close()
	cd.Close()
	d.stop()
}
