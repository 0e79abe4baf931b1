package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/testutil"
)

// Issue 8, defect 1: a descriptor in a reply that the peer has not read is
// in flight, charged by the kernel to the holder's uid; past RLIMIT_NOFILE
// of them every sendmsg(2) of a descriptor by that uid fails with
// ETOOMANYREFS (unix(7)). The kernel exempts CAP_SYS_RESOURCE and
// CAP_SYS_ADMIN, so these holders run as an unprivileged uid (as the
// shipped unit runs root with no capability), under a low RLIMIT_NOFILE
// set for the process the test starts.

// holderUID is the uid the holders of these tests run as.
const holderUID = 4010

// startLowLimit starts a holder as holderUID with RLIMIT_NOFILE nofile,
// serving a socket every uid may connect to, with policy.
func startLowLimit(t testing.TB, nofile int, policy string, args ...string) (*daemon, string) {
	t.Helper()
	// The holder runs as holderUID, so that the kernel charges descriptors
	// in flight to a user without CAP_SYS_RESOURCE (unix(7)). Root's client
	// trusts its socket directory only because root made it, inside a
	// directory only root can write: as systemd's RuntimeDirectory= with
	// User= does (ctlsock.TrustedHolders).
	parent := testutil.ShortDir(t)
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "h")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, holderUID, holderUID); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "h.sock")
	pol := writePolicy(t, dir, policy)
	d := startServing(t, daemonOpts{
		socket:  path,
		args:    append([]string{"--socket-mode", "0666", "--policy", pol}, args...),
		wrapper: []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "setpriv", fmt.Sprintf("--reuid=%d", holderUID), fmt.Sprintf("--regid=%d", holderUID), "--clear-groups"},
	})
	return d, path
}

// startFlood runs peer flood as c against the holder at path and waits
// until every connection it opened has been answered at least once. The
// returned stop ends the flood: the peer exits when its stdin closes, and
// the kernel drops whatever it never read.
func startFlood(t testing.TB, c cred, path string, args ...string) (stop func()) {
	t.Helper()
	cmd := exec.Command(peerBin, append([]string{path, "flood"}, args...)...)
	cmd.Env = append(cleanEnv(), "HOME=/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid, Groups: c.groups}}
	return testutil.StartUntilLine(t, cmd, "flooding")
}

// TestGetOnlyPeerCannotDenyGets: a uid allowed get on one name opens 120
// connections and sends 20 gets on each without reading a reply. Each of
// its connections pins at most one reply's descriptor, and past
// --max-conns-per-uid its connections are refused, so root's gets and
// stores go on being served, and no undelivered get is audited as ok.
func TestGetOnlyPeerCannotDenyGets(t *testing.T) {
	needRoot(t)
	testutil.CheckLeaks(t)
	const policy = `
[[rule]]
user = "nobody"
ops = ["get"]
names = ["pub/a"]
`
	d, path := startLowLimit(t, 256, policy)
	c := dial(t, path)
	storeNew(t, c, "pub/a")
	before := d.fdsWithSockets(d.sockets())

	const conns, per = 120, 20
	stop := startFlood(t, nobody, path, "get", "pub/a", fmt.Sprint(conns), fmt.Sprint(per))
	// Without the bounds, 2,400 descriptors in flight against a limit of
	// 256: every get failed, root's included.
	ctx := testCtx(t)
	for i := range 50 {
		f, _, err := c.Get(ctx, "pub/a")
		if err != nil {
			t.Fatalf("root's get %d during the flood: %v", i, err)
		}
		f.Close()
	}
	fresh := dial(t, path)
	storeGet(t, fresh, "during")
	if err := fresh.Delete(ctx, "during"); err != nil {
		t.Fatal(err)
	}
	fresh.Close()
	d.waitFor("the per-uid connection limit", func(r record) bool {
		return r.str("msg") == "connection refused: too many connections" && r.num("max_conns_per_uid") == 64 && r.num("peer_uid") == float64(nobody.uid)
	})

	stop()
	waitFDs(t, d, before)
	ok := d.count(func(r record) bool {
		return r.str("msg") == "request" && r.str("op") == "get" && r.num("peer_uid") == float64(nobody.uid) && r.str("result") == "ok"
	})
	if ok > 64 {
		t.Errorf("%d of nobody's gets audited ok; at most one per connection (64) reached it", ok)
	}
	t.Logf("nobody's gets delivered: %d", ok)
}

// TestDescriptorsInFlightRefusedCleanly: a uid with transfer rights pins
// three dump pages of 253 descriptors each, past the holder's
// RLIMIT_NOFILE of 512. The kernel then refuses every descriptor the
// holder's uid sends (ETOOMANYREFS): root's get is answered with "limit
// reached" and audited so, not closed without a word and audited ok; once
// the peer goes, gets work again.
func TestDescriptorsInFlightRefusedCleanly(t *testing.T) {
	needRoot(t)
	testutil.CheckLeaks(t)
	const policy = `
[[rule]]
user = "nobody"
ops = ["transfer"]
names = ["pub/*"]
any_owner = true
`
	d, path := startLowLimit(t, 512, policy)
	c := dial(t, path)
	ln := testutil.ListenTCP(t)
	ctx := testCtx(t)
	for i := range 253 {
		if _, err := c.Store(ctx, fmt.Sprintf("pub/%03d", i), ln, fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := d.fdsWithSockets(d.sockets())

	stop := startFlood(t, nobody, path, "dump", "pub/*", "3", "1")
	f, _, err := c.Get(ctx, "pub/000")
	if err == nil {
		f.Close()
	}
	if !errors.Is(err, fdholder.ErrLimit) || !strings.Contains(err.Error(), "too many descriptors in flight") {
		t.Fatalf("root's get with 759 descriptors in flight: %v, want a limit error naming the descriptors in flight", err)
	}
	d.waitFor("the get's audit line", func(r record) bool {
		return r.str("msg") == "request" && r.str("op") == "get" && r.num("peer_uid") == 0 && r.str("result") == "limit reached"
	})
	stop()
	got, _, err := c.Get(ctx, "pub/000")
	if err != nil {
		t.Fatalf("root's get after the peer left: %v", err)
	}
	got.Close()
	waitFDs(t, d, before)
}
