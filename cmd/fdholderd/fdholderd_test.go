package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

func TestServeOnSocket(t *testing.T) {
	testutil.CheckLeaks(t)
	path := socketPath(t)
	d := startServing(t, daemonOpts{socket: path})

	r := d.waitFor("serving", func(r record) bool { return r.str("msg") == "serving" })
	if r.str("path") != path || int(r.num("pid")) != d.pid() || r["activated"] != false {
		t.Errorf("start-up line = %v, want path %s, pid %d, activated false", r, path, d.pid())
	}
	if m := fileMode(t, filepath.Dir(path)); !m.IsDir() || m.Perm() != 0o755 {
		t.Errorf("socket directory mode = %v, want a directory in mode 0755", m)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket in mode 0600", fi.Mode())
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("socket directory holds %d entries, want the socket only (no temporary left behind): %v", len(ents), ents)
	}

	c := dial(t, path)
	storeGet(t, c, "web")
	c.Close()

	d.stop()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after exit: lstat %s: %v, want the socket file removed", path, err)
	}
}

func TestSecondInstanceRefused(t *testing.T) {
	testutil.CheckLeaks(t)
	path := socketPath(t)
	d := startServing(t, daemonOpts{socket: path})
	ino := inode(t, path)

	code, _, stderr := runOnce(t, nil, "--socket", path)
	if code == 0 {
		t.Fatalf("second instance exited 0; stderr:\n%s", stderr)
	}
	want := fmt.Sprintf("fdholderd: a holder is already serving on %s (pid %d)", path, d.pid())
	if !strings.Contains(stderr, want) {
		t.Errorf("second instance's stderr:\n%s\nwant it to contain %q", stderr, want)
	}
	if got := inode(t, path); got != ino {
		t.Errorf("the socket file was replaced (inode %d, was %d)", got, ino)
	}
	c := dial(t, path)
	storeGet(t, c, "still-serving")
	c.Close()
	d.stop()
}

func TestStaleSocketReplaced(t *testing.T) {
	testutil.CheckLeaks(t)
	path := socketPath(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// The file of a holder that died: bound, then closed without unlinking.
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := ctlsock.Probe(testCtx(t), path); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("probe of the stale socket: %v, want ECONNREFUSED", err)
	}
	stale := inode(t, path)

	d := startServing(t, daemonOpts{socket: path})
	d.waitFor("the replacement", func(r record) bool { return r.str("msg") == "replaced a stale socket file" && r.str("path") == path })
	if got := inode(t, path); got == stale {
		t.Errorf("the socket file is still the stale one")
	}
	if m := fileMode(t, path); m.Perm() != 0o600 {
		t.Errorf("socket mode = %v, want 0600", m)
	}
	c := dial(t, path)
	storeGet(t, c, "web")
	c.Close()
	d.stop()
}

func TestNotSocketRefused(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"regular file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("precious\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"symbolic link", func(t *testing.T, path string) {
			if err := os.Symlink("elsewhere", path); err != nil {
				t.Fatal(err)
			}
		}},
		{"named pipe", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(testutil.ShortDir(t), "h.sock")
			tt.make(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}

			code, _, stderr := runOnce(t, nil, "--socket", path)
			if code != 1 {
				t.Errorf("exit status %d, want 1; stderr:\n%s", code, stderr)
			}
			if !strings.Contains(stderr, "fdholderd: listen "+path+": ") || !strings.Contains(stderr, "not a socket") {
				t.Errorf("stderr:\n%s\nwant the path and \"not a socket\"", stderr)
			}

			after, err := os.Lstat(path)
			if err != nil {
				t.Fatalf("the path is gone: %v", err)
			}
			if after.Mode() != before.Mode() || !os.SameFile(before, after) || after.ModTime() != before.ModTime() {
				t.Errorf("the path changed: %v %v, was %v %v", after.Mode(), after.ModTime(), before.Mode(), before.ModTime())
			}
			if tt.name == "regular file" {
				if b, _ := os.ReadFile(path); string(b) != "precious\n" {
					t.Errorf("the file now holds %q", b)
				}
			}
		})
	}
}

func TestSocketPathChoice(t *testing.T) {
	tests := []struct {
		name     string
		env      bool // set FDHOLDER_SOCKET to the "env" path
		flag     bool // pass --socket with the "flag" path
		serves   string
		untouchd string // a path that must not be created
	}{
		{name: "FDHOLDER_SOCKET", env: true, serves: "env"},
		{name: "--socket over FDHOLDER_SOCKET", env: true, flag: true, serves: "flag", untouchd: "env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			dir := testutil.ShortDir(t)
			paths := map[string]string{"env": filepath.Join(dir, "env", "h.sock"), "flag": filepath.Join(dir, "flag", "h.sock")}
			var o daemonOpts
			if tt.env {
				o.env = []string{"FDHOLDER_SOCKET=" + paths["env"]}
			}
			if tt.flag {
				o.socket = paths["flag"]
			}
			d := startServing(t, o)
			want := paths[tt.serves]
			if r := d.waitFor("serving", func(r record) bool { return r.str("msg") == "serving" }); r.str("path") != want {
				t.Errorf("serving %s, want %s", r.str("path"), want)
			}
			c := dial(t, want)
			storeGet(t, c, "web")
			c.Close()
			if tt.untouchd != "" {
				if _, err := os.Lstat(filepath.Dir(paths[tt.untouchd])); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("lstat %s: %v, want it never created", paths[tt.untouchd], err)
				}
			}
			d.stop()
			if _, err := os.Lstat(want); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after exit: lstat %s: %v, want the socket file removed", want, err)
			}
		})
	}
}

func TestJSONLogs(t *testing.T) {
	testutil.CheckLeaks(t)
	path := socketPath(t)
	d := startServing(t, daemonOpts{socket: path, args: []string{"--log-level", "info"}})
	c := dial(t, path)
	ctx := testCtx(t)
	ln := testutil.ListenTCP(t)
	if _, err := c.Store(ctx, "web", ln, fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctx, "missing"); !errors.Is(err, fdholder.ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	c.Close()
	d.stop()

	lines, _ := d.log.snapshot()
	var recs []record
	for _, line := range lines {
		var r record
		if err := jsonUnmarshal(line, &r); err != nil {
			t.Errorf("log line is not JSON: %v\n%s", err, line)
			continue
		}
		if r.str("ts") == "" || r.str("level") == "" || r.str("msg") == "" {
			t.Errorf("log line without ts, level or msg: %s", line)
		}
		recs = append(recs, r)
	}
	find := func(match func(record) bool) record {
		t.Helper()
		for _, r := range recs {
			if match(r) {
				return r
			}
		}
		t.Fatalf("no such log line in:\n%s", strings.Join(lines, "\n"))
		return nil
	}
	self := func(t *testing.T, r record) {
		t.Helper()
		if int(r.num("peer_uid")) != os.Getuid() || int(r.num("peer_gid")) != os.Getgid() || int(r.num("peer_pid")) != os.Getpid() {
			t.Errorf("audit line %v: want peer_uid %d, peer_gid %d, peer_pid %d", r, os.Getuid(), os.Getgid(), os.Getpid())
		}
	}

	t.Run("store", func(t *testing.T) {
		r := find(func(r record) bool { return r.str("op") == "store" && r.str("name") == "web" })
		if r.str("result") != "ok" || r.str("level") != "info" || r["error"] != nil {
			t.Errorf("store audit line = %v, want result ok at info, no error", r)
		}
		self(t, r)
	})
	t.Run("failed get", func(t *testing.T) {
		r := find(func(r record) bool { return r.str("op") == "get" && r.str("name") == "missing" })
		// A miss is ordinary (every get-or-create starts with one): info.
		if r.str("result") != proto.CodeNotFound.String() || r.str("level") != "info" || r.str("error") == "" {
			t.Errorf("get audit line = %v, want result %q at info, with an error", r, proto.CodeNotFound)
		}
		self(t, r)
	})
	t.Run("start-up and shutdown", func(t *testing.T) {
		r := find(func(r record) bool { return r.str("msg") == "serving" })
		if r.str("path") != path || int(r.num("pid")) != d.pid() || r["activated"] != false {
			t.Errorf("start-up line = %v", r)
		}
		find(func(r record) bool {
			return r.str("msg") == "shutting down" && strings.Contains(r.str("reason"), "terminated")
		})
		r = find(func(r record) bool { return r.str("msg") == "stopped" })
		if r.num("entries_closed") != 1 || r["forced"] != false {
			t.Errorf("shutdown line = %v, want 1 entry closed, not forced", r)
		}
	})
}

func TestLogOptions(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		json        bool
		wantStore   bool // the audit line of a successful store (info)
		wantRefused bool // the audit line of a refused store (warn)
	}{
		{name: "console default", args: nil, wantStore: true, wantRefused: true},
		{name: "json warn", args: []string{"--log-format", "json", "--log-level", "warn"}, json: true, wantRefused: true},
		{name: "json error", args: []string{"--log-format", "json", "--log-level", "error"}, json: true},
		{name: "json debug", args: []string{"--log-format", "json", "--log-level", "debug"}, json: true, wantStore: true, wantRefused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			path := socketPath(t)
			// The defaults, then tt.args over them (the last flag wins).
			d := start(t, daemonOpts{socket: path, args: append([]string{"--log-format", "console", "--log-level", "info"}, tt.args...)})
			waitSocket(t, path)
			c := dial(t, path)
			ctx := testCtx(t)
			if _, err := c.Store(ctx, "web", testutil.ListenTCP(t), fdholder.StoreOptions{}); err != nil {
				t.Fatal(err)
			}
			// A refusal an operator should see: logged at warn.
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Store(ctx, "notsock", pr, fdholder.StoreOptions{})
			pr.Close()
			pw.Close()
			if !errors.Is(err, fdholder.ErrNotSocket) {
				t.Fatalf("store of a pipe: %v", err)
			}
			c.Close()
			d.stop()

			lines, _ := d.log.snapshot()
			var gotStore, gotRefused bool
			for _, line := range lines {
				var r record
				isJSON := jsonUnmarshal(line, &r) == nil
				if isJSON != tt.json {
					t.Errorf("line is JSON: %v, want %v: %s", isJSON, tt.json, line)
				}
				gotStore = gotStore || strings.Contains(line, "store") && strings.Contains(line, "web")
				gotRefused = gotRefused || strings.Contains(line, "store") && strings.Contains(line, "notsock")
			}
			if gotStore != tt.wantStore || gotRefused != tt.wantRefused {
				t.Errorf("audit of the store logged: %v, want %v; of the refused store: %v, want %v", gotStore, tt.wantStore, gotRefused, tt.wantRefused)
			}
			if !tt.json && !slices.ContainsFunc(lines, func(l string) bool {
				return strings.Contains(l, "INFO") && strings.Contains(l, "serving") && strings.Contains(l, path)
			}) {
				t.Errorf("no human-readable start-up line naming %s", path)
			}
		})
	}
}

// waitSocket waits until a holder answers at path.
func waitSocket(t testing.TB, path string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		_, err := ctlsock.Probe(testCtx(t), path)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no holder answers at %s: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNoDescriptorGrowth(t *testing.T) {
	testutil.CheckLeaks(t)
	path := socketPath(t)
	d := start(t, daemonOpts{socket: path, args: []string{"--log-level", "warn"}})
	waitSocket(t, path)
	c := dial(t, path)
	ctx := testCtx(t)
	ln := testutil.ListenTCP(t)

	// One round first, so that whatever the runtime opens once is open.
	round := func(c *fdholder.Client, name string) {
		t.Helper()
		if _, err := c.Store(ctx, name, ln, fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Store(ctx, name, ln, fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrExists) {
			t.Fatalf("second store: %v, want ErrExists", err)
		}
		f, _, err := c.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, err := c.Store(ctx, name, ln, fdholder.StoreOptions{Replace: true}); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Get(ctx, name); !errors.Is(err, fdholder.ErrNotFound) {
			t.Fatalf("get after delete: %v, want ErrNotFound", err)
		}
	}
	round(c, "warm-up")
	before := testutil.CountFDs(t, d.pid())

	const rounds = 200
	for i := range rounds {
		if i%10 == 0 {
			// A connection of its own, closed at once.
			fresh := dial(t, path)
			round(fresh, fmt.Sprintf("fresh-%d", i))
			fresh.Close()
			continue
		}
		round(c, fmt.Sprintf("burst-%d", i%7))
	}
	if n, err := c.List(ctx); err != nil || len(n) != 0 {
		t.Fatalf("list after the burst: %d entries, %v; want none", len(n), err)
	}

	// The holder closes a connection after it sees the hang-up, a moment
	// after the client's close: wait for the count to settle.
	var after int
	for deadline := time.Now().Add(waitTimeout); ; {
		after = testutil.CountFDs(t, d.pid())
		if after <= before || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if after > before {
		t.Errorf("the holder has %d descriptors open after %d rounds, %d before", after, rounds, before)
	}
	c.Close()
	d.stop()
}

func TestReadiness(t *testing.T) {
	testutil.CheckLeaks(t)
	dir := testutil.ShortDir(t)
	notify := listenNotify(t, filepath.Join(dir, "notify"))
	path := filepath.Join(dir, "h.sock")
	d := startServing(t, daemonOpts{socket: path, env: []string{"NOTIFY_SOCKET=" + notify.path}})

	if got, want := notify.next(t), "READY=1\nSTATUS=holding 0 entries"; got != want {
		t.Errorf("first notification %q, want %q", got, want)
	}
	c := dial(t, path)
	ctx := testCtx(t)
	ln := testutil.ListenTCP(t)
	for _, name := range []string{"a", "b", "c"} {
		if _, err := c.Store(ctx, name, ln, fdholder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	notify.waitFor(t, "STATUS=holding 3 entries")
	if err := c.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	notify.waitFor(t, "STATUS=holding 2 entries")
	f, _, err := c.Take(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	notify.waitFor(t, "STATUS=holding 1 entry")
	c.Close()

	d.stop()
	rest := notify.drain(t)
	if len(rest) == 0 || rest[len(rest)-1] != "STOPPING=1\nSTATUS=stopping" {
		t.Errorf("notifications after the last status: %q, want STOPPING=1 last", rest)
	}
	for _, m := range rest {
		if strings.HasPrefix(m, "READY=1") {
			t.Errorf("a second READY=1: %q", m)
		}
	}
}

// notifySocket is a stand-in for systemd's notification socket: a real
// unixgram socket whose datagrams the test reads.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan string
}

func listenNotify(t testing.TB, path string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, conn: conn, msgs: make(chan string, 1024)}
	go func() {
		defer close(n.msgs)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(n.close)
	return n
}

func (n *notifySocket) close() { n.conn.Close() }

// next returns the next datagram.
func (n *notifySocket) next(t testing.TB) string {
	t.Helper()
	select {
	case m, ok := <-n.msgs:
		if !ok {
			t.Fatal("notification socket closed")
		}
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("no notification within %v", waitTimeout)
		return ""
	}
}

// waitFor reads datagrams until one equals want.
func (n *notifySocket) waitFor(t testing.TB, want string) {
	t.Helper()
	var seen []string
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notification socket closed before %q; saw %q", want, seen)
			}
			if m == want {
				return
			}
			seen = append(seen, m)
		case <-time.After(waitTimeout):
			t.Fatalf("no notification %q within %v; saw %q", want, waitTimeout, seen)
		}
	}
}

// drain returns the datagrams not yet taken, once every sender is gone
// (the holder has exited): it waits until the reader has taken every
// datagram queued in the socket, then closes it. Closing first would
// lose a datagram still queued: a Read after Close fails at once, and
// the kernel drops what the socket held (the holder's last one,
// STOPPING=1, sent a moment before it exits, is read by a goroutine a
// busy machine may not have run yet). SIOCINQ on a datagram socket is the
// size of the next datagram queued, 0 when none is (unix_inq_len).
func (n *notifySocket) drain(t testing.TB) []string {
	t.Helper()
	raw, err := n.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(time.Millisecond) {
		var queued int
		var qerr error
		if err := raw.Control(func(fd uintptr) { queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
			t.Fatal(err)
		}
		if qerr != nil {
			t.Fatalf("SIOCINQ on the notification socket: %v", qerr)
		}
		if queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the notification socket still holds a datagram of %d bytes after %v", queued, waitTimeout)
		}
	}
	n.close()
	var ms []string
	for m := range n.msgs {
		ms = append(ms, m)
	}
	return ms
}
