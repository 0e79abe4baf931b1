package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// Exit statuses of testdata/peer.
const (
	peerOK         = 0
	peerNotFound   = 3
	peerExists     = 4
	peerPermission = 5
	peerUnreach    = 6
	peerLimit      = 7

	// peerNoConnect is exit 5 for a connect(2) the socket's mode refused
	// (not a status of peer's own).
	peerNoConnect = -5
)

// isDenial matches the audit line of a refused request.
func isDenial(r record) bool {
	return r.str("msg") == "request" && r.str("result") == "permission denied"
}

func TestDefaultRefusesOtherUIDs(t *testing.T) {
	needRoot(t)
	testutil.CheckLeaks(t)
	path := sharedSocket(t)
	d := startServing(t, daemonOpts{socket: path, args: []string{"--socket-mode", "0666"}})
	c := dial(t, path)
	addr := storeNew(t, c, "web")
	before := testutil.CountFDs(t, d.pid())

	for _, who := range []cred{nobody, wwwData, member} {
		for _, args := range [][]string{
			{"store", "web", "replace"}, {"store", "new"}, {"get", "web"}, {"get", "absent"},
			{"take", "web"}, {"delete", "web"}, {"list"},
		} {
			t.Run(who.name+" "+strings.Join(args, " "), func(t *testing.T) {
				r := peerDo(t, who, path, args...)
				if r.code != peerPermission || !strings.Contains(r.stderr, "permission denied: uid ") {
					t.Errorf("exit %d (%s), want %d, permission denied", r.code, strings.TrimSpace(r.stderr), peerPermission)
				}
			})
		}
	}
	// fdclient's own exit status for a refusal.
	for _, args := range [][]string{{"list"}, {"delete", "web"}, {"exec", "web", "--", "/bin/true"}} {
		r := runAs(t, nobody, fdclientBin, append([]string{"--socket", path}, args...)...)
		if r.code != 5 || !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("fdclient %v as nobody: exit %d, stderr %q; want exit 5, permission denied", args, r.code, r.stderr)
		}
	}
	// Every refusal was logged with the peer and the rule.
	denial := d.waitFor("a denial of nobody's delete", func(r record) bool {
		return isDenial(r) && r.str("op") == "delete" && r.num("peer_uid") == 65534
	})
	if denial.str("name") != "web" || denial.num("peer_pid") == 0 ||
		denial.str("rule") != "default: no policy; only root and uid 0 may use the holder" {
		t.Errorf("denial line %v lacks the name, the pid or the rule", denial)
	}
	// That line is nobody's first delete, not the last refusal: the lines
	// of the last ones may still be in the pipe. Wait for them all.
	d.waitCount("denials", 3*7+3, isDenial)
	checkAccepts(t, c, "web", addr)
	es, err := c.List(testCtx(t))
	if err != nil || len(es) != 1 {
		t.Fatalf("list: %v, %v; want web alone", es, err)
	}
	waitFDs(t, d, before)
}

// waitFDs waits for the holder's descriptor count to come back to want (it
// closes a connection a moment after the client does) and fails if it
// does not.
func waitFDs(t testing.TB, d *daemon, want int) {
	t.Helper()
	got := d.settledFDs(want)
	if got != want {
		var open []string
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.pid()))
		for _, e := range ents {
			target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", d.pid(), e.Name()))
			open = append(open, e.Name()+" -> "+target)
		}
		t.Errorf("the holder has %d descriptors open, want %d:\n  %s", got, want, strings.Join(open, "\n  "))
	}
}

func TestSocketModeAndGroup(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name     string
		args     []string
		wantMode os.FileMode
		wantGID  uint32
		results  map[string]int // peer name -> exit status of "list"
	}{
		{name: "default 0600", wantMode: 0o600, wantGID: 0,
			results: map[string]int{"root": peerOK, "nobody": peerNoConnect, "member": peerNoConnect}},
		{name: "group by gid", args: []string{"--socket-mode", "0660", "--socket-group", "4001"}, wantMode: 0o660, wantGID: 4001,
			results: map[string]int{"root": peerOK, "member": peerPermission, "stranger": peerNoConnect, "nobody": peerNoConnect}},
		{name: "group by name", args: []string{"--socket-mode", "660", "--socket-group", "nogroup"}, wantMode: 0o660, wantGID: 65534,
			results: map[string]int{"nobody": peerPermission, "member": peerNoConnect}},
		{name: "everyone", args: []string{"--socket-mode", "0666"}, wantMode: 0o666, wantGID: 0,
			results: map[string]int{"nobody": peerPermission, "stranger": peerPermission}},
	}
	peers := map[string]cred{"root": asRoot, "nobody": nobody, "member": member, "stranger": stranger}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			path := sharedSocket(t)
			d := startServing(t, daemonOpts{socket: path, args: tt.args})
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if gid := fi.Sys().(*syscall.Stat_t).Gid; fi.Mode().Perm() != tt.wantMode || gid != tt.wantGID {
				t.Errorf("socket mode %v group %d, want %v group %d", fi.Mode().Perm(), gid, tt.wantMode, tt.wantGID)
			}
			for name, want := range tt.results {
				// The socket's mode keeps the peer out: exit 5 too, with
				// the permission and the flags that grant it. A denial
				// by the policy proves the connection was made.
				r := peerDo(t, peers[name], path, "list")
				noConnect := strings.Contains(r.stderr, "has no write permission on the socket") && strings.Contains(r.stderr, "--socket-mode 0660 --socket-group GROUP")
				switch {
				case want == peerNoConnect && (r.code != peerPermission || !noConnect),
					want != peerNoConnect && (r.code != want || noConnect):
					t.Errorf("list as %s: exit %d (%s), want %d", name, r.code, strings.TrimSpace(r.stderr), want)
				}
			}
			d.stop()
		})
	}
}

// testPolicy is the policy of TestPolicyOpByOp. Line numbers matter: the
// test checks the rule references in the audit log.
const testPolicy = `# fdholder test policy
[[rule]]
user = "nobody"
ops = ["get", "list"]
names = ["pub/*"]

[[rule]]
uid = 33
ops = ["store", "get", "take", "delete", "list"]
names = ["www/**"]

[[rule]]
gid = 4001                 # member's supplementary group
ops = ["store", "get", "delete", "list"]
names = ["team/*"]
any_owner = true
`

func TestPolicyOpByOp(t *testing.T) {
	needRoot(t)
	testutil.CheckLeaks(t)
	path := sharedSocket(t)
	pol := writePolicy(t, filepath.Dir(path), testPolicy)
	d := startServing(t, daemonOpts{socket: path, args: []string{"--socket-mode", "0666", "--policy", pol}})
	c := dial(t, path)
	addrs := map[string]string{}
	for _, name := range []string{"pub/a", "pub/x/y", "priv/secret", "www/root", "team/root"} {
		addrs[name] = storeNew(t, c, name)
	}
	before := testutil.CountFDs(t, d.pid())

	// In order: later rows see what earlier ones stored, took and deleted.
	steps := []struct {
		who  cred
		args []string
		want int
		list []string // for list: the names shown
		rule string   // for a denial: what decided, a substring of the audit line's rule
	}{
		// nobody: get and list on pub/*, '*' within one segment, nothing else.
		{who: nobody, args: []string{"get", "pub/a"}, want: peerOK},
		{who: nobody, args: []string{"get", "pub/x/y"}, want: peerPermission, rule: `default: no rule grants get on "pub/x/y" to uid 65534`},
		{who: nobody, args: []string{"get", "priv/secret"}, want: peerPermission, rule: `default: no rule grants get on "priv/secret"`},
		{who: nobody, args: []string{"get", "priv/absent"}, want: peerPermission}, // not "not found": no name is revealed
		{who: nobody, args: []string{"get", "pub/absent"}, want: peerNotFound},
		{who: nobody, args: []string{"store", "pub/new"}, want: peerPermission, rule: "default: no rule grants store"},
		{who: nobody, args: []string{"store", "pub/a", "replace"}, want: peerPermission},
		{who: nobody, args: []string{"take", "pub/a"}, want: peerPermission},
		{who: nobody, args: []string{"delete", "pub/a"}, want: peerPermission},
		{who: nobody, args: []string{"list"}, want: peerOK, list: []string{"pub/a"}},
		// www-data: its own entries under www/, any depth; others' only to get.
		{who: wwwData, args: []string{"store", "www/own"}, want: peerOK},
		{who: wwwData, args: []string{"store", "www/own"}, want: peerExists},
		{who: wwwData, args: []string{"store", "www/own", "replace"}, want: peerOK},
		{who: wwwData, args: []string{"store", "www/deep/er"}, want: peerOK},
		{who: wwwData, args: []string{"store", "www/root", "replace"}, want: peerPermission, rule: "rule 2 (" + pol + ":7): grants store on entries uid 33 stored; this one is uid 0's"},
		{who: wwwData, args: []string{"delete", "www/root"}, want: peerPermission, rule: "rule 2 (" + pol + ":7): grants delete on entries uid 33 stored"},
		{who: wwwData, args: []string{"take", "www/root"}, want: peerPermission, rule: "rule 2 (" + pol + ":7): grants take"},
		{who: wwwData, args: []string{"get", "www/root"}, want: peerOK},
		{who: wwwData, args: []string{"take", "www/own"}, want: peerOK},
		{who: wwwData, args: []string{"delete", "www/deep/er"}, want: peerOK},
		{who: wwwData, args: []string{"delete", "www/absent"}, want: peerNotFound},
		{who: wwwData, args: []string{"store", "pub/a", "replace"}, want: peerPermission},
		{who: wwwData, args: []string{"get", "pub/a"}, want: peerPermission},
		{who: wwwData, args: []string{"list"}, want: peerOK, list: []string{"www/root"}},
		// member, by its supplementary group 4001: team/*, any owner, no take.
		{who: member, args: []string{"store", "team/m"}, want: peerOK},
		{who: member, args: []string{"delete", "team/root"}, want: peerOK},
		{who: member, args: []string{"store", "team/m", "replace"}, want: peerOK},
		{who: member, args: []string{"take", "team/m"}, want: peerPermission, rule: `default: no rule grants take on "team/m" to uid 4000`},
		{who: member, args: []string{"get", "team/m"}, want: peerOK},
		{who: member, args: []string{"get", "www/root"}, want: peerPermission},
		{who: member, args: []string{"list"}, want: peerOK, list: []string{"team/m"}},
		// stranger: no rule at all.
		{who: stranger, args: []string{"list"}, want: peerPermission, rule: "default: no rule grants list to uid 4002"},
		{who: stranger, args: []string{"get", "pub/a"}, want: peerPermission},
		{who: stranger, args: []string{"store", "team/s"}, want: peerPermission},
		// root sees everything.
		{who: asRoot, args: []string{"list"}, want: peerOK, list: []string{"priv/secret", "pub/a", "pub/x/y", "team/m", "www/root"}},
	}
	for i, st := range steps {
		t.Run(fmt.Sprintf("%02d %s %s", i, st.who.name, strings.Join(st.args, " ")), func(t *testing.T) {
			r := peerDo(t, st.who, path, st.args...)
			if r.code != st.want {
				t.Fatalf("exit %d (%s), want %d", r.code, strings.TrimSpace(r.stderr), st.want)
			}
			if st.list != nil {
				if got := lines(r.stdout); !slices.Equal(got, st.list) {
					t.Errorf("list shows %q, want %q", got, st.list)
				}
			}
			if st.want == peerPermission && !strings.Contains(r.stderr, "permission denied: uid "+fmt.Sprint(st.who.uid)+" may not "+st.args[0]) {
				t.Errorf("stderr %q does not say which op was denied", r.stderr)
			}
			if st.rule != "" {
				name := ""
				if len(st.args) > 1 {
					name = st.args[1]
				}
				d.waitFor("the denial's audit line", func(r record) bool {
					return isDenial(r) && r.str("op") == st.args[0] && r.str("name") == name &&
						r.num("peer_uid") == float64(st.who.uid) && r.num("peer_pid") > 0 && strings.Contains(r.str("rule"), st.rule)
				})
			}
		})
	}
	// Root's entries the peers were refused are still held and serving.
	for _, name := range []string{"pub/a", "pub/x/y", "priv/secret", "www/root"} {
		checkAccepts(t, c, name, addrs[name])
	}
	// team/root went (member had any_owner), team/m came: one for one.
	waitFDs(t, d, before)
}

func TestPolicyReload(t *testing.T) {
	needRoot(t)
	testutil.CheckLeaks(t)
	path := sharedSocket(t)
	dir := filepath.Dir(path)
	pol := writePolicy(t, dir, testPolicy)
	d := startServing(t, daemonOpts{socket: path, args: []string{"--socket-mode", "0666", "--policy", pol}})
	c := dial(t, path)
	storeNew(t, c, "priv/secret")
	if r := peerDo(t, nobody, path, "get", "priv/secret"); r.code != peerPermission {
		t.Fatalf("before the reload: exit %d, want %d", r.code, peerPermission)
	}

	// A good file: takes effect.
	writePolicy(t, dir, testPolicy+"\n[[rule]]\nuid = 65534\nops = [\"get\"]\nnames = [\"priv/*\"]\n")
	d.signal(syscall.SIGHUP)
	d.waitFor("the reload", func(r record) bool { return r.str("msg") == "policy reloaded" && r.num("rules") == 4 })
	if r := peerDo(t, nobody, path, "get", "priv/secret"); r.code != peerOK {
		t.Fatalf("after the reload: exit %d (%s), want 0", r.code, r.stderr)
	}

	// A bad file: logged with its line, the policy in force stays.
	writePolicy(t, dir, "[[rule]]\nuid = 65534\nops = [\"get\", \"steal\"]\nnames = [\"**\"]\n")
	d.signal(syscall.SIGHUP)
	bad := d.waitFor("the failed reload", func(r record) bool { return r.str("msg") == "policy reload failed; keeping the policy in force" })
	if want := "policy " + pol + `:3: unknown op "steal"`; !strings.Contains(bad.str("error"), want) {
		t.Errorf("reload error %q, want it to contain %q", bad.str("error"), want)
	}
	if r := peerDo(t, nobody, path, "get", "priv/secret"); r.code != peerOK {
		t.Errorf("after a bad reload: exit %d, want 0 (the previous policy)", r.code)
	}
	if r := peerDo(t, nobody, path, "store", "x"); r.code != peerPermission {
		t.Errorf("after a bad reload, store: exit %d, want %d", r.code, peerPermission)
	}

	// A missing file too.
	os.Remove(pol)
	d.signal(syscall.SIGHUP)
	d.waitFor("the second failed reload", func(r record) bool {
		return r.str("msg") == "policy reload failed; keeping the policy in force" && strings.Contains(r.str("error"), "no such file")
	})
	if r := peerDo(t, nobody, path, "get", "priv/secret"); r.code != peerOK {
		t.Errorf("after a missing file: exit %d, want 0", r.code)
	}
	d.stop()
}

func TestBadPolicyStopsStartup(t *testing.T) {
	dir := testutil.ShortDir(t)
	tests := []struct {
		name, text, want string
	}{
		{name: "unknown op", text: "[[rule]]\nuid = 1\nops = [\"read\"]\n", want: ":3: unknown op \"read\""},
		{name: "unknown user", text: "\n[[rule]]\nuser = \"no-such-user-fdh\"\n", want: ":3: unknown user \"no-such-user-fdh\""},
		{name: "unknown key", text: "[[rule]]\nuid = 1\nop = [\"get\"]\n", want: ":3: unknown key \"op\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := writePolicy(t, dir, tt.text)
			sock := filepath.Join(dir, "h.sock")
			code, _, stderr := runOnce(t, nil, "--socket", sock, "--policy", pol)
			if code != 1 || !strings.Contains(stderr, "fdholderd: policy "+pol+tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q", code, stderr, "fdholderd: policy "+pol+tt.want)
			}
			if _, err := os.Lstat(sock); err == nil {
				t.Errorf("a holder that did not start left its socket at %s", sock)
			}
		})
	}
	code, _, stderr := runOnce(t, nil, "--socket", filepath.Join(dir, "h.sock"), "--policy", filepath.Join(dir, "none.toml"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing policy: exit %d, stderr %q", code, stderr)
	}
}

func TestSIGHUPWithoutPolicy(t *testing.T) {
	testutil.CheckLeaks(t)
	path := socketPath(t)
	d := startServing(t, daemonOpts{socket: path})
	d.signal(syscall.SIGHUP)
	d.waitFor("the SIGHUP line", func(r record) bool { return r.str("msg") == "SIGHUP: no --policy to reload" })
	c := dial(t, path)
	storeGet(t, c, "still")
	c.Close()
	d.stop()
}

// transferPolicy: www-data may transfer (dump from here, load there) any
// owner's entries under www/; nobody may transfer its own entries under
// pub/ only.
const transferPolicy = `
[[rule]]
uid = 33
ops = ["transfer", "list", "get"]
names = ["www/**"]
any_owner = true

[[rule]]
uid = 65534
ops = ["transfer"]
names = ["pub/*"]
`

// TestTransferPolicy checks that dump and load (fdclient transfer) are
// decided by the policy's transfer op, entry by entry and with the owners
// the entries carry, on both holders.
func TestTransferPolicy(t *testing.T) {
	needRoot(t)
	testutil.CheckLeaks(t)
	src, dst := sharedSocket(t), sharedSocket(t)
	for _, path := range []string{src, dst} {
		pol := writePolicy(t, filepath.Dir(path), transferPolicy)
		startServing(t, daemonOpts{socket: path, args: []string{"--socket-mode", "0666", "--policy", pol}})
	}
	c := dial(t, src)
	for _, name := range []string{"www/root", "www/deep/er", "pub/a", "priv/x"} {
		storeNew(t, c, name)
	}
	steps := []struct {
		who    cred
		glob   string
		want   int
		stdout string
	}{
		// nobody may transfer only its own pub/ entries: root's are left
		// out of the dump, so nothing is copied, and nothing refused.
		{who: nobody, glob: "pub/*", want: peerOK, stdout: "copied 0\n"},
		// www-data: every www/ entry, whoever owns it; the rest are left out.
		{who: wwwData, want: peerOK, stdout: "copied 2\n"},
		// Again: the destination holds them now; each is refused there.
		{who: wwwData, want: peerExists, stdout: "copied 0\nwww/deep/er\nwww/root\n"},
		// No rule grants transfer to the stranger at all.
		{who: stranger, want: peerPermission, stdout: ""},
	}
	for i, st := range steps {
		t.Run(fmt.Sprintf("%d %s", i, st.who.name), func(t *testing.T) {
			args := []string{"transfer", dst}
			if st.glob != "" {
				args = append(args, st.glob)
			}
			r := peerDo(t, st.who, src, args...)
			if r.code != st.want || r.stdout != st.stdout {
				t.Errorf("exit %d, stdout %q (stderr %q); want %d, %q", r.code, r.stdout, strings.TrimSpace(r.stderr), st.want, st.stdout)
			}
		})
	}
	// The copies keep their owner (root), as in the source.
	d := dial(t, dst)
	got, err := d.List(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
		if e.OwnerUID != 0 {
			t.Errorf("%s: owner uid %d after the transfer, want 0", e.Name, e.OwnerUID)
		}
	}
	if !slices.Equal(names, []string{"www/deep/er", "www/root"}) {
		t.Errorf("the destination holds %q, want the two www/ entries", names)
	}
}
