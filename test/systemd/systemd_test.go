package systemd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/testutil"
)

// listed is one entry of `fdclient list --json`, without the live queue.
type listed struct {
	Name      string `json:"name"`
	Network   string `json:"network"`
	Address   string `json:"address"`
	Listening bool   `json:"listening"`
	UID       uint32 `json:"owner_uid"`
	GID       uint32 `json:"owner_gid"`
	PID       int32  `json:"owner_pid"`
	StoredAt  string `json:"stored_at"`
	ExpiresAt string `json:"expires_at"`
}

// TestUnitsUnderSystemd runs the shipped units under a real systemd:
// socket activation, readiness and status, entries stored through
// fdclient, kill -9 of the holder with every entry recovered with its
// metadata from the file descriptor store and a recovered listener still
// accepting, an upgrade in place (systemctl reload: SIGUSR2, same pid), a
// systemctl restart, and a clean stop that empties the store.
func TestUnitsUnderSystemd(t *testing.T) {
	needMachine(t)
	dir := scratchDir(t)
	buildBinaries(t, dir)
	m := boot(t, dir)
	fdclient := dir + "/fdclient"
	const ctl = "/run/fdholder/fdholder.sock"

	// Socket activation: the socket listens, the holder is not started
	// until a client connects.
	m.must("systemctl", "start", "fdholderd.socket")
	if s := m.show("fdholderd.socket", "ActiveState"); s != "active" {
		t.Fatalf("fdholderd.socket: ActiveState %q, want active", s)
	}
	if s := m.show("fdholderd.service", "ActiveState"); s != "inactive" {
		t.Fatalf("before any client: fdholderd.service ActiveState %q, want inactive", s)
	}

	// Clients store two listeners; the first connection starts the holder.
	m.must(fdclient, "--socket", ctl, "listen", "--ttl", "1h", "web", "tcp:127.0.0.1:8080")
	m.must(fdclient, "--socket", ctl, "listen", "app/unix", "unix:/run/app.sock")
	m.must(fdclient, "--socket", ctl, "listen", "dns", "udp:127.0.0.1:5353")
	m.waitFor("fdholderd.service active", func() bool { return m.show("fdholderd.service", "ActiveState") == "active" })
	// STATUS= is throttled (sdnotify.StatusInterval): wait for it.
	m.waitFor("StatusText holding 3 entries", func() bool {
		return m.show("fdholderd.service", "StatusText") == "holding 3 entries"
	})
	// Each entry is its socket and its metadata in the store.
	if n := m.show("fdholderd.service", "NFileDescriptorStore"); n != "6" {
		t.Errorf("NFileDescriptorStore = %s, want 6", n)
	}
	before := list(t, m, fdclient, ctl)
	if len(before) != 3 {
		t.Fatalf("entries = %+v, want 3", before)
	}

	// kill -9: systemd restarts the holder, which recovers every entry
	// from the store, with its metadata, before READY=1.
	pid := m.show("fdholderd.service", "MainPID")
	m.must("kill", "-9", pid)
	m.waitFor("the holder restarted", func() bool {
		p := m.show("fdholderd.service", "MainPID")
		return p != pid && p != "0" && m.show("fdholderd.service", "ActiveState") == "active"
	})
	if after := list(t, m, fdclient, ctl); !reflect.DeepEqual(after, before) {
		t.Errorf("after kill -9:\n got %+v\nwant %+v", after, before)
	}
	if n := m.show("fdholderd.service", "NFileDescriptorStore"); n != "6" {
		t.Errorf("after recovery: NFileDescriptorStore = %s, want 6 (old metadata replaced, not added to)", n)
	}
	journal := m.must("journalctl", "--no-pager", "-u", "fdholderd.service")
	if !strings.Contains(journal, `"msg":"recovered","source":"systemd","entries":3,`) {
		t.Errorf("no recovery line for 3 entries in the journal:\n%s", journal)
	}
	checkAccepts(t, m, ctl, "web")

	// An upgrade in place: systemctl reload sends SIGUSR2; same pid.
	pid = m.show("fdholderd.service", "MainPID")
	m.must("systemctl", "reload", "fdholderd.service")
	m.waitFor("the upgrade", func() bool {
		j, _ := m.run("journalctl", "--no-pager", "-u", "fdholderd.service")
		return strings.Contains(j, `"msg":"recovered","source":"upgrade","entries":3,`)
	})
	if p := m.show("fdholderd.service", "MainPID"); p != pid {
		t.Errorf("after the upgrade: MainPID %s, want %s (the same process)", p, pid)
	}
	if after := list(t, m, fdclient, ctl); !reflect.DeepEqual(after, before) {
		t.Errorf("after the upgrade:\n got %+v\nwant %+v", after, before)
	}
	if n := m.show("fdholderd.service", "NFileDescriptorStore"); n != "6" {
		t.Errorf("after the upgrade: NFileDescriptorStore = %s, want 6", n)
	}
	checkAccepts(t, m, ctl, "web")

	// systemctl restart: a graceful stop, then a start; the store is kept.
	pid = m.show("fdholderd.service", "MainPID")
	m.must("systemctl", "restart", "fdholderd.service")
	if p := m.show("fdholderd.service", "MainPID"); p == pid || m.show("fdholderd.service", "ActiveState") != "active" {
		t.Fatalf("after systemctl restart: MainPID %s (was %s), %s", p, pid, m.show("fdholderd.service", "ActiveState"))
	}
	if after := list(t, m, fdclient, ctl); !reflect.DeepEqual(after, before) {
		t.Errorf("after systemctl restart:\n got %+v\nwant %+v", after, before)
	}

	// A delete is mirrored: the store drops the socket and its metadata.
	m.must(fdclient, "--socket", ctl, "delete", "app/unix")
	if n := m.show("fdholderd.service", "NFileDescriptorStore"); n != "4" {
		t.Errorf("after a delete: NFileDescriptorStore = %s, want 4", n)
	}

	// A clean stop: exit status 0, the store dropped (systemd 252).
	m.must("systemctl", "stop", "fdholderd.service", "fdholderd.socket")
	for prop, want := range map[string]string{"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0", "NFileDescriptorStore": "0"} {
		if got := m.show("fdholderd.service", prop); got != want {
			t.Errorf("after stop: %s = %q, want %q", prop, got, want)
		}
	}
	journal = m.must("journalctl", "--no-pager", "-u", "fdholderd.service")
	if !strings.Contains(journal, `"msg":"stopped","entries_closed":2`) {
		t.Errorf("no clean stop line in the journal:\n%s", journal)
	}
	if strings.Contains(journal, "file descriptor store: cannot") {
		t.Errorf("the journal reports a store failure:\n%s", journal)
	}
}

// list returns the entries of `fdclient list --json`, run in the machine.
func list(t testing.TB, m *machine, fdclient, ctl string) []listed {
	t.Helper()
	var out []listed
	if err := json.Unmarshal([]byte(m.must(fdclient, "--socket", ctl, "list", "--json")), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkAccepts connects to the held TCP listener name from inside the
// machine's network namespace, then gets the listener from the holder (the
// control socket reached through /proc/PID/root) and accepts that very
// connection on it.
func checkAccepts(t testing.TB, m *machine, ctl, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := fdholder.Dial(ctx, m.hostPath(ctl))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, _, err := c.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	msg := fmt.Sprintf("hello %d", time.Now().UnixNano())
	err = m.inNetns(func() error {
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), waitTimeout)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = io.WriteString(conn, msg)
		return err
	})
	if err != nil {
		t.Fatalf("connect to %s in the machine: %v", ln.Addr(), err)
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(waitTimeout))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on the recovered listener %q: %v", name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitTimeout))
	got, err := io.ReadAll(io.LimitReader(conn, int64(len(msg))))
	if err != nil || string(got) != msg {
		t.Fatalf("read %q, %v; want %q", got, err, msg)
	}
}

// TestManyEntriesSurviveKill9 stores 2,000 TCP listeners (from the test's
// own network namespace, through the Go client) in a holder run by the
// shipped units, kills it with SIGKILL, and checks that every one comes
// back with its metadata and that the store holds each once. It logs the
// figures: how long the stores took (systemd compares each descriptor
// stored with every one it holds), and how long after the kill the holder
// was active again.
func TestManyEntriesSurviveKill9(t *testing.T) {
	const n = 2000
	needMachine(t)
	dir := scratchDir(t)
	buildBinaries(t, dir)
	m := boot(t, dir)
	m.must("systemctl", "start", "fdholderd.socket")
	const ctl = "/run/fdholder/fdholder.sock"
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	c, err := fdholder.Dial(ctx, m.hostPath(ctl))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Store(ctx, fmt.Sprintf("svc/%04d", i), ln.(*net.TCPListener), fdholder.StoreOptions{})
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	before, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.show("fdholderd.service", "NFileDescriptorStore"); got != fmt.Sprint(2*n) {
		t.Errorf("NFileDescriptorStore = %s, want %d", got, 2*n)
	}

	t.Logf("%d stores in %v", n, time.Since(start))
	pid := m.show("fdholderd.service", "MainPID")
	killed := time.Now()
	m.must("kill", "-9", pid)
	m.waitFor("the holder restarted", func() bool {
		p := m.show("fdholderd.service", "MainPID")
		return p != pid && p != "0" && m.show("fdholderd.service", "ActiveState") == "active"
	})
	t.Logf("restarted and active %v after kill -9", time.Since(killed))
	after, err := c.List(ctx) // the client re-dials once by itself
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Errorf("after kill -9: %d entries, want the %d from before, identical", len(after), len(before))
	}

	if got := m.show("fdholderd.service", "NFileDescriptorStore"); got != fmt.Sprint(2*n) {
		t.Errorf("after recovery: NFileDescriptorStore = %s, want %d", got, 2*n)
	}
	m.must("systemctl", "stop", "fdholderd.service", "fdholderd.socket")
}

// TestExampleService runs the shipped example unit, gunicorn started
// through fdclient exec, under the shipped holder units: it serves on the
// held socket, and after a restart of the service the very same socket
// (same stored time, same owner) serves again.
func TestExampleService(t *testing.T) {
	needMachine(t)
	out, err := exec.Command("/usr/bin/python3", "-c", "import gunicorn").CombinedOutput()
	testutil.NeedPeer(t, err == nil, "the example runs /usr/bin/python3 -m gunicorn (apt-get install python3-gunicorn): %v %s", err, out)
	dir := scratchDir(t)
	buildBinaries(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	app := "def app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'hello from the example\\n']\n"
	if err := os.WriteFile(filepath.Join(dir, "web", "app.py"), []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	copyGunicornConf(t, filepath.Join(dir, "web"))
	m := boot(t, dir)
	fdclient := dir + "/fdclient"
	const ctl = "/run/fdholder/fdholder.sock"

	m.must("systemctl", "start", "example-web.service")
	if s := m.show("fdholderd.socket", "ActiveState"); s != "active" {
		t.Errorf("the example pulled in fdholderd.socket: ActiveState %q, want active", s)
	}
	get := func() string {
		t.Helper()
		return m.waitAnswer("the example to answer", "hello from the example\n")
	}
	if r := get(); !strings.HasPrefix(r, "HTTP/1.0 200") {
		t.Errorf("reply %q", r)
	}
	before := list(t, m, fdclient, ctl)
	if len(before) != 1 || before[0].Name != "web" || before[0].Address != "127.0.0.1:8080" {
		t.Fatalf("held: %+v, want web on 127.0.0.1:8080", before)
	}

	if _, err := m.run("systemctl", "restart", "example-web.service"); err != nil {
		j, _ := m.run("journalctl", "--no-pager", "-n", "80")
		t.Fatalf("%v\n%s", err, j)
	}
	get()
	if after := list(t, m, fdclient, ctl); !reflect.DeepEqual(after, before) {
		t.Errorf("after a restart of the service:\n got %+v\nwant %+v (the same socket)", after, before)
	}
	if _, err := m.run("systemctl", "stop", "example-web.service", "fdholderd.service", "fdholderd.socket"); err != nil {
		j, _ := m.run("journalctl", "--no-pager", "-n", "80")
		t.Fatalf("%v\n%s", err, j)
	}
}

// waitAnswer waits until a GET of http://127.0.0.1:8080/, made inside the
// machine's network namespace, is answered with a body ending in body, and
// returns the whole reply.
func (m *machine) waitAnswer(what, body string) string {
	m.t.Helper()
	var reply string
	m.waitFor(what, func() bool {
		err := m.inNetns(func() error {
			conn, err := net.DialTimeout("tcp", "127.0.0.1:8080", time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
				return err
			}
			b, err := io.ReadAll(conn)
			reply = string(b)
			return err
		})
		return err == nil && strings.HasSuffix(reply, body)
	})
	return reply
}
