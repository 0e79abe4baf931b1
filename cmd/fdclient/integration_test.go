package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// acceptsThroughHolder gets the socket held under name from the holder at
// path and checks that it accepts conn's connection: conn was made to the
// held socket (possibly while no process but the holder had it open).
func acceptsThroughHolder(t testing.TB, path, name string, conn net.Conn) {
	t.Helper()
	ln := holdertest.Listener(t, path, name)
	defer ln.Close()
	ln.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(5 * time.Second))
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on the held %q: %v", name, err)
	}
	defer s.Close()
	// Prove it is this connection: a byte written by the client arrives.
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := s.Read(b[:]); err != nil || b[0] != 'x' {
		t.Fatalf("read from the accepted connection: %q, %v", b[:], err)
	}
}

func dial(t testing.TB, network, address string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, address, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// listJSON returns "fdclient list --json", decoded.
func listJSON(t testing.TB, socket string) []map[string]any {
	t.Helper()
	r := mustRun(t, socket, "list", "--json")
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	return out
}

// entry returns the object of list --json for name, or nil.
func entry(t testing.TB, socket, name string) map[string]any {
	t.Helper()
	for _, e := range listJSON(t, socket) {
		if e["name"] == name {
			return e
		}
	}
	return nil
}

func TestListenTCP(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	r := mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:0")
	addr := strings.TrimSuffix(r.stdout, "\n")
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" || port == "0" || strings.Contains(addr, "\n") {
		t.Fatalf("stdout %q: want the bound address with its real port on one line", r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("stderr %q, want nothing", r.stderr)
	}
	// fdclient has exited: only the holder has the socket open, and the
	// kernel queues the connection on it.
	conn := dial(t, "tcp", addr)
	acceptsThroughHolder(t, h.Path, "web", conn)
	if e := entry(t, h.Path, "web"); e == nil || e["network"] != "tcp" || e["address"] != addr || e["listening"] != true {
		t.Errorf("list entry %v, want a tcp listener at %s", e, addr)
	}
}

func TestListenUnixKeepsFile(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	path := filepath.Join(testutil.ShortDir(t), "app.sock")
	r := mustRun(t, h.Path, "listen", "app", "unix:"+path)
	if r.stdout != path+"\n" {
		t.Errorf("stdout %q, want %q", r.stdout, path+"\n")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("after fdclient exited: stat %s: %v, %v; want the socket file in place", path, fi, err)
	}
	conn := dial(t, "unix", path)
	acceptsThroughHolder(t, h.Path, "app", conn)
}

func TestListenPacket(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	path := filepath.Join(testutil.ShortDir(t), "g.sock")
	tests := []struct {
		name, arg, network string
		address            func(stdout string) bool
	}{
		{"udp", "udp:127.0.0.1:0", "udp", func(s string) bool {
			_, p, err := net.SplitHostPort(s)
			return err == nil && p != "0"
		}},
		{"unixgram", "unixgram:" + path, "unixgram", func(s string) bool { return s == path }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRun(t, h.Path, "listen", tt.name, tt.arg)
			out := strings.TrimSuffix(r.stdout, "\n")
			if !tt.address(out) {
				t.Errorf("stdout %q: not the bound address", r.stdout)
			}
			e := entry(t, h.Path, tt.name)
			if e == nil || e["network"] != tt.network || e["address"] != out || e["listening"] != false {
				t.Errorf("list entry %v, want a %s socket at %s", e, tt.network, out)
			}
			if _, ok := e["queued"]; ok {
				t.Errorf("list entry %v: queued for a packet socket", e)
			}
		})
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("unixgram socket file: %v", err)
	}
}

func TestListenHeldAndReplace(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	first := strings.TrimSpace(mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:0").stdout)

	tests := []struct {
		name string
		args []string
	}{
		// The held socket has this very address: without the check for the
		// name first, the bind would fail with "address already in use".
		{"same address", []string{"listen", "web", "tcp:" + first}},
		{"other address", []string{"listen", "web", "tcp:127.0.0.1:0"}},
		{"with ttl", []string{"listen", "--ttl", "1h", "web", "tcp:127.0.0.1:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fdclient(t, h.Path, tt.args...)
			if r.code != exitExists {
				t.Fatalf("%v, want exit %d", r, exitExists)
			}
			if r.stdout != "" || !strings.HasPrefix(r.stderr, "fdclient: ") || strings.Count(r.stderr, "\n") != 1 ||
				!strings.Contains(r.stderr, `"web"`) || !strings.Contains(r.stderr, "already held (use --replace)") {
				t.Errorf("%v: want one line on stderr naming web, saying already held and (use --replace)", r)
			}
		})
	}
	if e := entry(t, h.Path, "web"); e["address"] != first {
		t.Fatalf("entry after failed listens: %v, want the first socket at %s", e, first)
	}

	r := mustRun(t, h.Path, "listen", "--replace", "--ttl", "1h", "web", "tcp:127.0.0.1:0")
	second := strings.TrimSpace(r.stdout)
	if second == first {
		t.Fatalf("--replace printed the old address %s", first)
	}
	e := entry(t, h.Path, "web")
	if e["address"] != second || e["expires_at"] == nil {
		t.Errorf("entry after --replace: %v, want %s with expires_at", e, second)
	}
	// The holder closed its copy of the old socket, the only one left.
	if c, err := net.DialTimeout("tcp", first, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the replaced socket at %s still accepts connections", first)
	}
	acceptsThroughHolder(t, h.Path, "web", dial(t, "tcp", second))
}

func TestListenBindFails(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(testutil.ShortDir(t), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, arg, want string
	}{
		{"address in use", "tcp:" + busy.Addr().String(), "address already in use"},
		{"path taken by a file", "unix:" + file, "address already in use"},
		{"no such directory", "unix:/nonexistent-dir/x.sock", "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fdclient(t, h.Path, "listen", "web", tt.arg)
			if r.code != exitError || !strings.Contains(r.stderr, tt.want) || !strings.HasPrefix(r.stderr, `fdclient: listen "web": `) {
				t.Errorf("%v, want exit 1 and %q", r, tt.want)
			}
		})
	}
	if got := listJSON(t, h.Path); len(got) != 0 {
		t.Errorf("entries after failed listens: %v", got)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the file in the way was removed: %v", err)
	}
}

func TestStore(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)

	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.File() // a duplicate, for the child
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()

	tests := []struct {
		name  string
		args  []string
		stdin *os.File
		extra []*os.File // from descriptor 3 on
		code  int
		want  string // in stderr
	}{
		{"socket at fd 3", []string{"store", "--fd", "3", "web"}, nil, []*os.File{lnFile}, exitOK, ""},
		{"held name", []string{"store", "--fd", "3", "web"}, nil, []*os.File{lnFile}, exitExists, "already held (use --replace)"},
		{"replace", []string{"store", "--fd", "3", "--replace", "--ttl", "10m", "web"}, nil, []*os.File{lnFile}, exitOK, ""},
		{"socket at fd 5", []string{"store", "--fd", "5", "five"}, nil, []*os.File{pr, pw, lnFile}, exitOK, ""},
		{"socket as stdin by default", []string{"store", "stdin"}, lnFile, nil, exitOK, ""},
		{"pipe", []string{"store", "--fd", "3", "pipe"}, nil, []*os.File{pr}, exitError, "not a socket"},
		{"pipe as stdin", []string{"store", "pipe"}, pr, nil, exitError, "not a socket"},
		{"closed descriptor", []string{"store", "--fd", "9", "closed"}, nil, []*os.File{lnFile}, exitError, "descriptor 9 is not open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := fdclientCmd(t, h.Path, tt.args...)
			if tt.stdin != nil {
				cmd.Stdin = tt.stdin
			}
			cmd.ExtraFiles = tt.extra
			r := wait(t, cmd)
			if r.code != tt.code {
				t.Fatalf("%v, want exit %d", r, tt.code)
			}
			if tt.want != "" && (!strings.Contains(r.stderr, tt.want) || strings.Count(r.stderr, "\n") != 1) {
				t.Errorf("stderr %q, want one line with %q", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}

	addr := ln.Addr().String()
	for _, name := range []string{"web", "five", "stdin"} {
		e := entry(t, h.Path, name)
		if e == nil || e["address"] != addr || e["listening"] != true || e["owner_pid"] == float64(os.Getpid()) {
			t.Errorf("entry %q = %v, want the listener at %s stored by fdclient", name, e, addr)
		}
	}
	if e := entry(t, h.Path, "web"); e["expires_at"] == nil {
		t.Errorf("web after store --replace --ttl: %v, want expires_at", e)
	}
	for _, name := range []string{"pipe", "closed"} {
		if e := entry(t, h.Path, name); e != nil {
			t.Errorf("failed store left entry %v", e)
		}
	}
	// The test's own copy closes; the held one still takes connections.
	ln.Close()
	lnFile.Close()
	acceptsThroughHolder(t, h.Path, "five", dial(t, "tcp", addr))
}

func TestList(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)

	if r := mustRun(t, h.Path, "list", "--json"); r.stdout != "[]\n" {
		t.Errorf("list --json with nothing held: %q, want []", r.stdout)
	}
	if r := mustRun(t, h.Path, "list"); strings.Count(r.stdout, "\n") != 1 || !strings.HasPrefix(r.stdout, "NAME ") {
		t.Errorf("list with nothing held: %q, want the header alone", r.stdout)
	}

	web := strings.TrimSpace(mustRun(t, h.Path, "listen", "--ttl", "1h", "web", "tcp:127.0.0.1:0").stdout)
	path := filepath.Join(testutil.ShortDir(t), "app.sock")
	mustRun(t, h.Path, "listen", "app", "unix:"+path)
	const queued = 3
	for range queued {
		dial(t, "tcp", web)
	}

	// Connections complete their handshake in the kernel, not in a
	// process; wait (bounded) until the accept queue shows them all.
	var e map[string]any
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if e = entry(t, h.Path, "web"); e != nil && e["queued"] == float64(queued) || time.Now().After(deadline) {
			break
		}
	}
	if e == nil || e["queued"] != float64(queued) || e["backlog"] == nil || e["backlog"].(float64) < queued {
		t.Fatalf("web = %v, want queued %d and a backlog", e, queued)
	}
	stored, err := time.Parse(time.RFC3339Nano, e["stored_at"].(string))
	if err != nil || time.Since(stored) > time.Minute || time.Since(stored) < 0 {
		t.Errorf("stored_at %v: %v", e["stored_at"], err)
	}
	expires, err := time.Parse(time.RFC3339Nano, e["expires_at"].(string))
	if err != nil || expires.Sub(stored) != time.Hour {
		t.Errorf("expires_at %v (%v), want stored_at + 1h", e["expires_at"], err)
	}
	if e["owner_uid"] != float64(os.Geteuid()) || e["owner_gid"] != float64(os.Getegid()) || e["owner_pid"].(float64) <= 0 {
		t.Errorf("owner of web: %v", e)
	}
	app := entry(t, h.Path, "app")
	if app == nil || app["network"] != "unix" || app["address"] != path || app["listening"] != true {
		t.Errorf("app = %v", app)
	}
	for _, k := range []string{"queued", "backlog", "expires_at"} {
		if _, ok := app[k]; ok {
			t.Errorf("app has %q: %v", k, app)
		}
	}

	r := mustRun(t, h.Path, "list")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("list:\n%s\nwant a header and 2 entries", r.stdout)
	}
	header := strings.Fields(lines[0])
	if strings.Join(header, " ") != "NAME NETWORK ADDRESS LISTEN QUEUED OWNER STORED EXPIRES" {
		t.Errorf("header %q", lines[0])
	}
	// Aligned: every column starts at the same offset in every line.
	for _, col := range []string{"ADDRESS", "QUEUED", "STORED"} {
		at := strings.Index(lines[0], col)
		for _, l := range lines[1:] {
			if len(l) <= at || l[at-1] != ' ' || l[at] == ' ' {
				t.Errorf("column %s not aligned at %d in %q", col, at, l)
			}
		}
	}
	// Rows in name order: app, then web.
	appRow, webRow := strings.Fields(lines[1]), strings.Fields(lines[2])
	if appRow[0] != "app" || appRow[1] != "unix" || appRow[2] != path || appRow[3] != "yes" || appRow[4] != "-" {
		t.Errorf("app row %q", lines[1])
	}
	wantQueue := strconv.Itoa(queued) + "/" + strconv.Itoa(int(e["backlog"].(float64)))
	owner := strconv.Itoa(os.Geteuid()) + "/" + strconv.Itoa(int(e["owner_pid"].(float64)))
	if webRow[0] != "web" || webRow[1] != "tcp" || webRow[2] != web || webRow[3] != "yes" || webRow[4] != wantQueue || webRow[5] != owner {
		t.Errorf("web row %q, want queue %s and owner %s", lines[2], wantQueue, owner)
	}
	if want := stored.Local().Format(tableTime); webRow[6]+" "+webRow[7] != want {
		t.Errorf("web row %q: stored %s %s, want %s", lines[2], webRow[6], webRow[7], want)
	}
}

func TestDelete(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	addr := strings.TrimSpace(mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:0").stdout)
	if r := mustRun(t, h.Path, "delete", "web"); r.stdout != "" || r.stderr != "" {
		t.Errorf("delete: %v, want silence", r)
	}
	if e := entry(t, h.Path, "web"); e != nil {
		t.Errorf("entry after delete: %v", e)
	}
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the deleted socket at %s still accepts connections", addr)
	}
	r := fdclient(t, h.Path, "delete", "web")
	if r.code != exitNotFound || !strings.Contains(r.stderr, `delete "web": not held`) {
		t.Errorf("second delete: %v, want exit %d", r, exitNotFound)
	}
}

// TestErrorsExitCodes drives every command into the errors a user meets and
// checks the exit code scripts rely on.
func TestErrorsExitCodes(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	nowhere := filepath.Join(testutil.ShortDir(t), "nobody.sock")
	aDir := filepath.Join(filepath.Dir(nowhere), "dir")
	if err := os.Mkdir(aDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()

	tests := []struct {
		name   string
		socket string
		args   []string
		code   int
		want   string
	}{
		{"list unreachable", nowhere, []string{"list"}, exitUnreachable, "holder unreachable at " + nowhere},
		{"list --json unreachable", nowhere, []string{"list", "--json"}, exitUnreachable, "holder unreachable"},
		{"delete unreachable", nowhere, []string{"delete", "web"}, exitUnreachable, "holder unreachable"},
		{"listen unreachable", nowhere, []string{"listen", "web", "tcp:127.0.0.1:0"}, exitUnreachable, "holder unreachable"},
		{"store unreachable", nowhere, []string{"store", "--fd", "3", "web"}, exitUnreachable, "holder unreachable"},
		{"exec unreachable", nowhere, []string{"exec", "web", "--", "true"}, exitUnreachable, "holder unreachable"},
		{"exec get-or-create unreachable", nowhere, []string{"exec", "web=tcp:127.0.0.1:0", "--", "true"}, exitUnreachable, "holder unreachable"},
		{"socket path is a directory", aDir, []string{"list"}, exitUnreachable, "holder unreachable"},
		{"socket directory writable by others", filepath.Dir(nowhere), []string{"list"}, exitError, "socket directory /tmp is writable by others (mode 1777)"},

		{"delete not held", h.Path, []string{"delete", "ghost"}, exitNotFound, `delete "ghost": not held`},
		{"exec not held", h.Path, []string{"exec", "ghost", "--", "true"}, exitNotFound, `get "ghost": not held`},

		{"invalid name", h.Path, []string{"delete", "no:colons"}, exitUsage, `invalid name "no:colons"`},
		{"invalid name listen", h.Path, []string{"listen", "_web", "tcp:127.0.0.1:0"}, exitUsage, `invalid name "_web"`},
		{"bad address", h.Path, []string{"listen", "web", "tcp:localhost"}, exitUsage, `bad address "tcp:localhost"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := fdclientCmd(t, tt.socket, tt.args...)
			cmd.ExtraFiles = []*os.File{lnFile}
			r := wait(t, cmd)
			if r.code != tt.code {
				t.Fatalf("%v, want exit %d", r, tt.code)
			}
			first, _, _ := strings.Cut(r.stderr, "\n")
			if !strings.HasPrefix(first, "fdclient: ") || !strings.Contains(first, tt.want) {
				t.Errorf("stderr %q, want a line \"fdclient: ...%s...\"", r.stderr, tt.want)
			}
		})
	}
	if got := listJSON(t, h.Path); len(got) != 0 {
		t.Errorf("entries after failures: %v", got)
	}
}

func TestTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	// A stuck holder: it accepts connections and never answers.
	path := filepath.Join(testutil.ShortDir(t), "stuck.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		defer close(accepted)
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		if c := <-accepted; c != nil {
			c.Close()
		}
	}()
	r := fdclient(t, path, "--timeout", "500ms", "list")
	// The request times out (exit 1); on a loaded machine the connect can
	// use up the time first, and a holder that cannot be connected to is
	// unreachable (exit 6). Either way the message names the limit.
	if r.code != exitError && r.code != exitUnreachable || !strings.Contains(r.stderr, "no answer within --timeout 500ms") {
		t.Errorf("%v, want exit 1 (or 6) and the timeout named", r)
	}
}

// Make sure the sentinels the exit codes rest on are what the client
// returns for the situations above.
func TestClientErrorsAreSentinels(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	err := dialHolder(t, h.Path).Delete(context.Background(), "ghost")
	if !errors.Is(err, fdholder.ErrNotFound) || exitCode(err) != exitNotFound {
		t.Errorf("delete of a missing name: %v", err)
	}
}
