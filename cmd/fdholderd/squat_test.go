package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// squatEnv is the environment of a user whose socket path falls back to
// $TMPDIR/fdholder-UID: TMPDIR set, no FDHOLDER_SOCKET, no XDG_RUNTIME_DIR.
func squatEnv(tmp string) []string {
	var env []string
	for _, kv := range cleanEnv() {
		if !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") && !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return append(env, "TMPDIR="+tmp, "HOME=/")
}

// fakeTmp returns a new directory that is to the test what /tmp is to a
// machine: owned by root, mode 1777.
func fakeTmp(t testing.TB) string {
	t.Helper()
	tmp := testutil.ShortDir(t)
	if err := os.Chmod(tmp, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return tmp
}

// mkdirAs creates dir owned by c with mode, as c would with mkdir(1).
func mkdirAs(t testing.TB, dir string, c cred, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(c.uid), int(c.gid)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// TestSocketDirectorySquatting is issue 8's defect 2 as an attacker plays
// it: nobody creates $TMPDIR/fdholder-4000 before its owner (uid 4000)
// does, and runs a real fdholderd of its own in it. The victim's fdclient
// must not store its listener there, and the victim's fdholderd must not
// start there; nor in a directory of its own that others may write. Each
// refusal says what is wrong and how to fix it.
func TestSocketDirectorySquatting(t *testing.T) {
	needRoot(t)
	victim := member // uid 4000
	const owned = "is owned by uid 65534 (nobody), not by root or uid 4000"
	tests := []struct {
		name       string
		owner      cred        // of $TMPDIR/fdholder-4000
		mode       os.FileMode // of $TMPDIR/fdholder-4000
		attacker   bool        // nobody runs a holder in it
		clientErr  string      // in the victim's fdclient error (exit 1)
		holderErr  string      // in the victim's fdholderd error (exit 1)
		clientCode int
	}{
		{name: "squatted by a holder of nobody's", owner: nobody, mode: 0o755, attacker: true,
			clientErr: owned, holderErr: owned},
		{name: "squatted, open to all", owner: nobody, mode: 0o777,
			clientErr: owned, holderErr: owned},
		{name: "the victim's own, writable by others", owner: victim, mode: 0o777,
			clientErr: "is writable by others (mode 0777)", holderErr: "is writable by others (mode 0777): anyone could put a socket of their own at the path or move the holder's away; run 'chmod go-w "},
		{name: "the victim's own, group-writable", owner: victim, mode: 0o775,
			clientErr: "is writable by others (mode 0775)", holderErr: "is writable by others (mode 0775)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := fakeTmp(t)
			dir := filepath.Join(tmp, "fdholder-"+strconv.Itoa(int(victim.uid)))
			mkdirAs(t, dir, tt.owner, tt.mode)
			sock := filepath.Join(dir, "fdholder.sock")
			var attacker *daemon
			if tt.attacker {
				attacker = startServing(t, daemonOpts{socket: sock, as: &nobody, env: squatEnv(tmp)})
			}

			r := runAsEnv(t, victim, squatEnv(tmp), fdclientBin, "listen", "web", "tcp:127.0.0.1:0")
			if r.code != 1 || !strings.Contains(r.stderr, "socket directory "+dir+" "+tt.clientErr) {
				t.Errorf("victim's fdclient listen: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, tt.clientErr)
			}
			r = runAsEnv(t, victim, squatEnv(tmp), binary, "--log-format", "json")
			if r.code != 1 || !strings.Contains(r.stderr, "fdholderd: listen "+sock+": untrusted socket directory or holder: socket directory "+dir+" "+tt.holderErr) {
				t.Errorf("victim's fdholderd: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, tt.holderErr)
			}
			if attacker != nil {
				// The attacker's holder never heard from the victim: its
				// whole log, read to the end once it has exited, holds no
				// request (a count before the exit could miss a line still
				// in the pipe).
				attacker.stop()
				if n := attacker.count(func(r record) bool { return r.str("msg") == "request" }); n != 0 {
					t.Errorf("the attacker's holder logged %d requests, want none", n)
				}
			}
			if _, err := os.Lstat(sock); tt.attacker == false && !os.IsNotExist(err) {
				t.Errorf("%s: %v; the victim's holder created it", sock, err)
			}
		})
	}
}

// TestClientRefusesForeignHolder: an abstract socket name (@name) has no
// directory to protect it, so anyone can bind it first; here nobody does,
// with a real fdholderd behind systemd-socket-activate. SO_PEERCRED on the
// client's end names the process that called listen(2) (unix(7)): the
// victim's fdclient and Go client see that it is neither root nor
// themselves and send it nothing.
func TestClientRefusesForeignHolder(t *testing.T) {
	needRoot(t)
	sa, err := exec.LookPath("systemd-socket-activate")
	testutil.NeedPeer(t, err == nil, "systemd-socket-activate (Debian package systemd): %v", err)
	testutil.CheckLeaks(t)
	path := "@" + filepath.Base(testutil.ShortDir(t)) + "-squat"
	attacker := start(t, daemonOpts{as: &nobody, wrapper: []string{sa, "--seqpacket", "-l", path}})
	attacker.waitLine("Listening on " + path)

	want := "untrusted socket directory or holder: the holder at " + path + " runs as uid 65534 (nobody), not as root or uid 4000"
	r := runAs(t, member, fdclientBin, "--socket", path, "listen", "web", "tcp:127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("fdclient listen: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
	}
	if r := peerDo(t, member, path, "store", "web"); r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("Go client store: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
	}
	// Root trusts no holder but root's.
	r = runAs(t, asRoot, fdclientBin, "--socket", path, "list")
	if r.code != 1 || !strings.Contains(r.stderr, "runs as uid 65534 (nobody), not as root:") {
		t.Errorf("fdclient list as root: exit %d, stderr %q", r.code, r.stderr)
	}
	attacker.waitFor("serving", func(r record) bool { return r.str("msg") == "serving" })
	// Counted once it has exited: its log is then read to the end.
	attacker.stop()
	if n := attacker.count(func(r record) bool { return r.str("msg") == "request" }); n != 0 {
		t.Errorf("the foreign holder logged %d requests, want none", n)
	}
}
