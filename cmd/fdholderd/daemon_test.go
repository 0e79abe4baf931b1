package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/testutil"
)

// binary is the fdholderd built by TestMain; fdclientBin and peerBin are
// the clients the security tests run as other uids.
var binary, fdclientBin, peerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fdholderd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = testutil.BuildBinary(dir, "fdholderd")
	if err == nil {
		fdclientBin, err = testutil.BuildBinary(dir, "fdclient")
	}
	if err == nil {
		peerBin, err = buildPeer(dir)
	}
	if err == nil {
		// Other uids run the clients from here.
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitTimeout bounds every wait for the daemon: for a line in its log, for
// its exit. Generous, since the binary is built with -race.
const waitTimeout = 20 * time.Second

// logLines collects what the daemon writes to stderr, line by line.
type logLines struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced at each new line
}

func newLogLines() *logLines { return &logLines{changed: make(chan struct{})} }

func (l *logLines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(b), nil
}

// snapshot returns the complete lines so far and a channel closed at the next.
func (l *logLines) snapshot() ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...), l.changed
}

func (l *logLines) String() string {
	lines, _ := l.snapshot()
	return strings.Join(lines, "\n")
}

// record is one JSON log line.
type record map[string]any

func (r record) str(key string) string {
	s, _ := r[key].(string)
	return s
}

func (r record) num(key string) float64 {
	f, _ := r[key].(float64)
	return f
}

// records parses the lines that are JSON objects.
func records(lines []string) []record {
	var rs []record
	for _, line := range lines {
		var r record
		if json.Unmarshal([]byte(line), &r) == nil {
			rs = append(rs, r)
		}
	}
	return rs
}

// daemon is a running fdholderd.
type daemon struct {
	t      testing.TB
	cmd    *exec.Cmd
	path   string // the control socket it was told to serve, if any
	log    *logLines
	exited chan struct{} // closed when it has exited and its output is read
	err    error         // from Wait, valid once exited is closed
}

// daemonOpts says how to start a daemon.
type daemonOpts struct {
	socket     string   // --socket, unless empty
	args       []string // more arguments
	env        []string // more environment, over a clean one
	wrapper    []string // a command that runs fdholderd, such as systemd-socket-activate
	extraFiles []*os.File
	bin        string // the binary to run; empty: the one TestMain built
	as         *cred  // run as this user; nil: as the test
}

// cleanEnv is the test's environment without what would steer the daemon.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "FDHOLDER_SOCKET", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES":
		default:
			env = append(env, kv)
		}
	}
	return env
}

// start runs fdholderd with JSON logs at debug level (unless args say
// otherwise) and kills it at the end of the test if it still runs.
func start(t testing.TB, o daemonOpts) *daemon {
	t.Helper()
	args := []string{"--log-format", "json", "--log-level", "debug"}
	if o.socket != "" {
		args = append(args, "--socket", o.socket)
	}
	args = append(args, o.args...)
	bin := binary
	if o.bin != "" {
		bin = o.bin
	}
	argv := append(append(append([]string(nil), o.wrapper...), bin), args...)
	d := &daemon{t: t, path: o.socket, log: newLogLines(), exited: make(chan struct{})}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Env = append(cleanEnv(), o.env...)
	d.cmd.Stderr = d.log
	d.cmd.ExtraFiles = o.extraFiles
	if o.as != nil {
		d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: o.as.uid, Gid: o.as.gid, Groups: o.as.groups}}
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			lines, _ := d.log.snapshot()
			if len(lines) > 40 {
				lines = append([]string{fmt.Sprintf("(%d lines before)", len(lines)-40)}, lines[len(lines)-40:]...)
			}
			t.Logf("fdholderd's stderr, the end:\n%s", strings.Join(lines, "\n"))
		}
	})
	return d
}

// startServing starts a daemon and waits until it serves.
func startServing(t testing.TB, o daemonOpts) *daemon {
	t.Helper()
	d := start(t, o)
	d.waitFor("serving", func(r record) bool { return r.str("msg") == "serving" })
	return d
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// waitFor waits for a JSON log line that satisfies match and returns it.
func (d *daemon) waitFor(what string, match func(record) bool) record {
	d.t.Helper()
	timeout := time.After(waitTimeout)
	for {
		lines, changed := d.log.snapshot()
		for _, r := range records(lines) {
			if match(r) {
				return r
			}
		}
		select {
		case <-changed:
		case <-d.exited:
			lines, _ := d.log.snapshot()
			for _, r := range records(lines) {
				if match(r) {
					return r
				}
			}
			d.t.Fatalf("fdholderd exited (%v) before logging %s", d.err, what)
		case <-timeout:
			d.t.Fatalf("fdholderd did not log %s within %v", what, waitTimeout)
		}
	}
}

// waitCount waits until at least n JSON log lines satisfy match and
// returns how many do then. A line the holder wrote before a reply may
// still be in the pipe when the client has the reply: a count taken at
// once can miss it.
func (d *daemon) waitCount(what string, n int, match func(record) bool) int {
	d.t.Helper()
	timeout := time.After(waitTimeout)
	for {
		_, changed := d.log.snapshot()
		if got := d.count(match); got >= n {
			return got
		}
		select {
		case <-changed:
		case <-d.exited:
			if got := d.count(match); got >= n {
				return got
			}
			d.t.Fatalf("fdholderd exited (%v) with %d of %d %s logged", d.err, d.count(match), n, what)
		case <-timeout:
			d.t.Fatalf("fdholderd logged %d of %d %s within %v", d.count(match), n, what, waitTimeout)
		}
	}
}

// count returns how many JSON log lines satisfy match.
func (d *daemon) count(match func(record) bool) int {
	lines, _ := d.log.snapshot()
	n := 0
	for _, r := range records(lines) {
		if match(r) {
			n++
		}
	}
	return n
}

// signal sends sig to the daemon.
func (d *daemon) signal(sig syscall.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the daemon to exit and returns its exit status.
func (d *daemon) wait() int {
	d.t.Helper()
	select {
	case <-d.exited:
	case <-time.After(waitTimeout):
		d.t.Fatalf("fdholderd did not exit within %v", waitTimeout)
	}
	var ee *exec.ExitError
	switch {
	case d.err == nil:
		return 0
	case errors.As(d.err, &ee) && ee.Exited():
		return ee.ExitCode()
	default:
		d.t.Fatalf("fdholderd: %v", d.err)
		return -1
	}
}

// stop sends SIGTERM and checks for a clean exit.
func (d *daemon) stop() {
	d.t.Helper()
	d.signal(syscall.SIGTERM)
	if code := d.wait(); code != 0 {
		d.t.Fatalf("fdholderd exited %d after SIGTERM, want 0", code)
	}
}

// runOnce runs fdholderd to completion with args and the clean environment
// plus env, and returns its exit status, stdout and stderr.
func runOnce(t testing.TB, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("fdholderd %v: %v\n%s", args, err, stderr.String())
	return -1, "", ""
}

// socketPath returns a socket path in a new short directory, in a
// subdirectory that does not exist yet.
func socketPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(testutil.ShortDir(t), "run", "h.sock")
}

func dial(t testing.TB, path string) *fdholder.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := fdholder.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// storeGet stores a fresh TCP listener under name through c, gets it back,
// and checks that the copy accepts a connection made to the original's
// address.
func storeGet(t testing.TB, c *fdholder.Client, name string) {
	t.Helper()
	ctx := testCtx(t)
	ln := testutil.ListenTCP(t)
	addr := ln.Addr().String()
	if _, err := c.Store(ctx, name, ln, fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	ln.Close() // the holder's copy keeps the socket open
	f, e, err := c.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if e.Name != name || e.Address != addr || !e.Listening {
		t.Errorf("got entry %+v, want %s listening on %s", e, name, addr)
	}
	gl, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial the held listener: %v", err)
	}
	defer conn.Close()
	gl.(*net.TCPListener).SetDeadline(time.Now().Add(waitTimeout))
	s, err := gl.Accept()
	if err != nil {
		t.Fatalf("accept on the copy got from the holder: %v", err)
	}
	s.Close()
}

// fileMode returns the mode of path (without following a symbolic link).
func fileMode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// inode returns the inode number of path.
func inode(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// socketInode returns the inode of the socket behind c, as /proc shows it in
// the "socket:[N]" link of every descriptor open on it.
func socketInode(t testing.TB, c syscall.Conn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return st.Ino
}

// holdsSocket reports whether process pid has a descriptor open on the
// socket of inode ino.
func holdsSocket(t testing.TB, pid int, ino uint64) bool {
	t.Helper()
	return openSockets(t, pid)[fmt.Sprintf("socket:[%d]", ino)]
}

// openSockets returns the sockets process pid has descriptors open on, as
// their /proc/PID/fd links say ("socket:[INODE]", proc(5)).
func openSockets(t testing.TB, pid int) map[string]bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	socks := map[string]bool{}
	for _, e := range ents {
		// A descriptor closed since ReadDir is simply not there.
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			socks[l] = true
		}
	}
	return socks
}

func jsonUnmarshal(line string, v any) error { return json.Unmarshal([]byte(line), v) }

// waitLine waits for a log line that contains s, JSON or not.
func (d *daemon) waitLine(s string) {
	d.t.Helper()
	timeout := time.After(waitTimeout)
	for {
		lines, changed := d.log.snapshot()
		for _, line := range lines {
			if strings.Contains(line, s) {
				return
			}
		}
		select {
		case <-changed:
		case <-d.exited:
			d.t.Fatalf("exited (%v) before logging %q", d.err, s)
		case <-timeout:
			d.t.Fatalf("no log line with %q within %v", s, waitTimeout)
		}
	}
}

// settledFDs waits up to waitTimeout for the daemon's descriptor count to
// come down to want, and returns the last count seen.
func (d *daemon) settledFDs(want int) int {
	d.t.Helper()
	var got int
	for deadline := time.Now().Add(waitTimeout); ; {
		got = testutil.CountFDs(d.t, d.pid())
		if got <= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sockets returns the sockets among the daemon's descriptors.
func (d *daemon) sockets() map[string]bool {
	d.t.Helper()
	return openSockets(d.t, d.pid())
}

// fdsWithSockets waits until the daemon's open sockets are exactly want
// (as sockets returned them), and returns its descriptor count then. After
// a client hangs up, the daemon closes its end of the connection a moment
// later, on the connection's goroutine: this waits for that close itself.
func (d *daemon) fdsWithSockets(want map[string]bool) int {
	d.t.Helper()
	var got map[string]bool
	for deadline := time.Now().Add(waitTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got = d.sockets(); maps.Equal(got, want) {
			return testutil.CountFDs(d.t, d.pid())
		}
	}
	d.t.Fatalf("fdholderd's sockets are %v after %v, want %v", got, waitTimeout, want)
	return 0
}
