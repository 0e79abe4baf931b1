package ctlsock

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// TestTrustRules builds directory chains with owners and modes (as root,
// which may chown) and checks what CheckDir (the holder, uid 4000) and
// TrustedHolders (a client, uid 4000) make of them.
func TestTrustRules(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.NeedPeer(t, false, "root, to give directories to other uids")
	}
	const me, other = 4000, 65534
	type dir struct {
		uid  int
		mode os.FileMode
	}
	tests := []struct {
		name      string
		chain     []dir // under a root-owned 0755 base: chain[len-1] is the socket directory
		link      bool  // the socket directory is reached through a symbolic link owned by other
		holderErr string
		clientErr string
		trusted   []int
	}{
		{name: "own directory", chain: []dir{{me, 0o755}}, trusted: []int{0, me}},
		{name: "root's directory", chain: []dir{{0, 0o755}}, trusted: []int{0, me}},
		{name: "own directory under sticky /tmp", chain: []dir{{0, 0o777 | os.ModeSticky}, {me, 0o700}}, trusted: []int{0, me}},
		{name: "squatted under sticky /tmp", chain: []dir{{0, 0o777 | os.ModeSticky}, {other, 0o755}},
			holderErr: "is owned by uid 65534", clientErr: "is owned by uid 65534"},
		{name: "given by root to another user", chain: []dir{{0, 0o755}, {other, 0o755}},
			holderErr: "is owned by uid 65534", trusted: []int{0, me, other}},
		{name: "socket directory writable by others", chain: []dir{{me, 0o777}},
			holderErr: "is writable by others (mode 0777)", clientErr: "is writable by others (mode 0777)"},
		{name: "sticky socket directory", chain: []dir{{0, 0o777 | os.ModeSticky}},
			holderErr: "is writable by others (mode 1777)", clientErr: "is writable by others (mode 1777)"},
		{name: "parent writable without the sticky bit", chain: []dir{{0, 0o777}, {me, 0o755}},
			holderErr: "above the socket directory, is writable by others (mode 0777)", clientErr: "above the socket directory, is writable by others"},
		{name: "parent owned by another user", chain: []dir{{other, 0o755}, {me, 0o755}},
			holderErr: "above the socket directory, is owned by uid 65534", clientErr: "above the socket directory, is owned by uid 65534"},
		{name: "symbolic link of another user", chain: []dir{{me, 0o755}}, link: true,
			holderErr: "is a symbolic link owned by uid 65534", clientErr: "is a symbolic link owned by uid 65534"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := testutil.ShortDir(t)
			if err := os.Chmod(base, 0o755); err != nil {
				t.Fatal(err)
			}
			dir := base
			for i, d := range tt.chain {
				dir = filepath.Join(dir, string(rune('a'+i)))
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(dir, d.uid, d.uid); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, d.mode); err != nil {
					t.Fatal(err)
				}
			}
			if tt.link {
				link := filepath.Join(base, "link")
				if err := os.Symlink(dir, link); err != nil {
					t.Fatal(err)
				}
				if err := os.Lchown(link, other, other); err != nil {
					t.Fatal(err)
				}
				dir = link
			}
			err := CheckDir(dir, me)
			wantUntrusted(t, "CheckDir", err, tt.holderErr)
			trusted, err := TrustedHolders(filepath.Join(dir, "h.sock"), me)
			wantUntrusted(t, "TrustedHolders", err, tt.clientErr)
			if err == nil && !slices.Equal(trusted, tt.trusted) {
				t.Errorf("TrustedHolders: %v, want %v", trusted, tt.trusted)
			}
		})
	}
}

func wantUntrusted(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v, want nil", what, err)
	case want != "" && (err == nil || !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: %v, want ErrUntrusted and %q", what, err, want)
	}
}

// TestCheckPeer names the holder's uid and those the client trusts.
func TestCheckPeer(t *testing.T) {
	if err := CheckPeer("/run/h.sock", 4000, []int{0, 4000}); err != nil {
		t.Errorf("own uid: %v", err)
	}
	err := CheckPeer("/run/h.sock", 4001, []int{0, 4000})
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "the holder at /run/h.sock runs as uid 4001, not as root or uid 4000") {
		t.Errorf("another uid: %v", err)
	}
}

// TestTrustedHoldersCached checks which verdicts are reused, and for how
// long, on an injected clock: a directory loosened after a check passes
// until trustTTL has gone by; a failure, and a directory that did not
// exist yet, are checked again at once.
func TestTrustedHoldersCached(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	trustNow = func() time.Time { return now }
	t.Cleanup(func() { trustNow = time.Now })
	me := os.Geteuid()
	dir := testutil.ShortDir(t)
	later := filepath.Join(dir, "later") // made during the test
	chmod := func(dir string, mode os.FileMode) func() {
		return func() {
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name    string
		before  func()
		advance time.Duration
		path    string
		wantErr string
	}{
		{name: "first check passes", before: chmod(dir, 0o700), path: filepath.Join(dir, "h.sock")},
		{name: "loosened, within the ttl: reused", before: chmod(dir, 0o777), advance: trustTTL - time.Nanosecond, path: filepath.Join(dir, "h.sock")},
		{name: "loosened, ttl over: checked again", advance: time.Nanosecond, path: filepath.Join(dir, "h.sock"), wantErr: "is writable by others (mode 0777)"},
		{name: "a failure is not reused", before: chmod(dir, 0o700), path: filepath.Join(dir, "h.sock")},
		{name: "no directory yet", path: filepath.Join(later, "h.sock")},
		{name: "a missing directory is not reused", before: func() {
			if err := os.Mkdir(later, 0o700); err != nil {
				t.Fatal(err)
			}
			chmod(later, 0o777)()
		}, path: filepath.Join(later, "h.sock"), wantErr: "is writable by others (mode 0777)"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before()
			}
			now = now.Add(s.advance)
			trusted, err := TrustedHoldersCached(s.path, me)
			wantUntrusted(t, "TrustedHoldersCached", err, s.wantErr)
			if err == nil && !slices.Contains(trusted, me) {
				t.Errorf("TrustedHoldersCached: %v, want %d among them", trusted, me)
			}
		})
	}
}
