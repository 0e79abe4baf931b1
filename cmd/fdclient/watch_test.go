package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/testutil"
)

func TestWatchUsage(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{name: "interval without watch", args: []string{"list", "--interval", "1s"}, want: "list: --interval needs --watch"},
		{name: "json and watch", args: []string{"list", "--watch", "--json"}, want: "list: --json and --watch exclude each other"},
		{name: "names and watch", args: []string{"list", "--names", "--watch"}, want: "list: --names and --watch exclude each other"},
		{name: "negative interval", args: []string{"list", "--watch", "--interval", "-1s"}, want: "list: negative --interval -1s"},
		{name: "interval too short", args: []string{"list", "--watch", "--interval", "10ms"}, want: "list: --interval 10ms is below 100ms"},
		{name: "bad interval", args: []string{"list", "--watch", "--interval", "often"}, want: `list: invalid value "often" for flag -interval`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runInProcess(t, tt.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "list [--json | --names | --watch [--interval DUR]]") {
				t.Errorf("got %v, want exit 2 with %q and the synopsis", r, tt.want)
			}
		})
	}
}

func TestSparkline(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    []uint32
		want string
	}{
		{name: "empty queue", h: []uint32{0, 0, 0}, want: "▁▁▁"},
		{name: "fill and drain", h: []uint32{0, 1, 3, 6, 6, 2, 0}, want: "▁▃▅██▄▁"},
		{name: "one waiting is visible", h: []uint32{0, 1, 4096}, want: "▁▂█"},
		{name: "steady", h: []uint32{5, 5}, want: "██"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := sparkline(tt.h); got != tt.want {
				t.Errorf("sparkline(%v) = %q, want %q", tt.h, got, tt.want)
			}
		})
	}
}

func TestRecordKeepsLastIntervals(t *testing.T) {
	hist := map[string][]uint32{}
	web := fdholder.Entry{Name: "web", HasQueue: true}
	for i := range watchHistory + 5 {
		web.Queued = uint32(i)
		hist = record(hist, []fdholder.Entry{web, {Name: "dns"}})
	}
	h := hist["web"]
	if len(h) != watchHistory || h[0] != 5 || h[len(h)-1] != watchHistory+4 {
		t.Errorf("history %v, want the last %d values, 5 to %d", h, watchHistory, watchHistory+4)
	}
	if _, ok := hist["dns"]; ok {
		t.Error("a history for an entry without a queue")
	}
	if hist = record(hist, nil); len(hist) != 0 {
		t.Errorf("history %v after the entries went away", hist)
	}
}

// serveQueue gets the listener held as name and accepts until n
// connections were accepted, as a restarted service drains its queue.
func serveQueue(t testing.TB, path, name string, n int) {
	t.Helper()
	ln := holdertest.Listener(t, path, name)
	defer ln.Close()
	for range n {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// TestWatchPipe: on a pipe, a watch prints one plain table per interval
// and ends with exit 0 on SIGINT.
func TestWatchPipe(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:0")
	cmd := fdclientCmd(t, h.Path, "list", "--watch", "--interval", "100ms")
	out := startPiped(t, cmd)
	sc := bufio.NewScanner(out)
	tables := 0
	var seen []string
	for tables < 3 && sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		if strings.ContainsRune(line, '\x1b') {
			t.Errorf("an escape sequence on a pipe: %q", line)
		}
		if strings.HasPrefix(line, "web ") && strings.Contains(line, "0/4096") {
			tables++
		}
	}
	if tables < 3 {
		t.Fatalf("%d tables showing web, want 3; output:\n%s", tables, strings.Join(seen, "\n"))
	}
	cmd.Process.Signal(syscall.SIGINT)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGINT: %v, want exit 0", err)
	}
}

// startPiped starts cmd with its standard output on a pipe, which it
// returns for the test to read to its end before cmd.Wait.
func startPiped(t testing.TB, cmd *exec.Cmd) io.Reader {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return out
}

// tmux drives a real terminal: a tmux server of its own (its own socket),
// killed at the end of the test.
type tmux struct {
	t    testing.TB
	bin  string
	sock string
}

// exitedLine is what the terminal shows once the program of startTmux
// has exited: "exited STATUS" on a line of its own.
var exitedLine = regexp.MustCompile(`(?m)^exited (\d+)$`)

// startTmux runs argv in a new terminal of cols by rows, under a shell
// that prints its exit status as exitedLine. The shell traps SIGINT, so
// that a Ctrl-C, which the terminal sends to both, ends only argv's
// program, as that program chooses (the trap is reset at exec, so the
// program gets SIGINT's default disposition). The status is read from the
// screen rather than from tmux, which once in a while leaves the exited
// process unreaped (a zombie) and so never reports the pane dead.
func startTmux(t testing.TB, cols, rows int, argv ...string) *tmux {
	t.Helper()
	bin, err := exec.LookPath("tmux")
	testutil.NeedPeer(t, err == nil, "tmux (apt-get install tmux)")
	dir := testutil.ShortDir(t)
	tm := &tmux{t: t, bin: bin, sock: filepath.Join(dir, "tmux")}
	// Keep the pane and its screen once the shell has exited, from the
	// server's start (a configuration file, not a later set-option).
	conf := filepath.Join(dir, "tmux.conf")
	if err := os.WriteFile(conf, []byte("set-option -g remain-on-exit on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The race detector's one-second sleep at exit would only slow the
	// test down.
	tm.run(append([]string{"-f", conf, "new-session", "-d", "-x", fmt.Sprint(cols), "-y", fmt.Sprint(rows),
		"-e", "GORACE=atexit_sleep_ms=0", "sh", "-c", `trap : INT; "$@"; s=$?; echo; echo "exited $s"`, "sh"}, argv...)...)
	t.Cleanup(func() { exec.Command(bin, "-S", tm.sock, "kill-server").Run() })
	return tm
}

func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command(tm.bin, append([]string{"-S", tm.sock}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (tm *tmux) screen() string { return tm.run("capture-pane", "-p") }

// waitScreen polls the screen until match holds, for up to 30 s.
func (tm *tmux) waitScreen(what string, match func(string) bool) string {
	tm.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := tm.screen()
		if match(s) {
			return s
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("waited 30s for %s; the screen:\n%s", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits for the program to exit and returns its exit status (the
// shell's: 128 plus the signal's number if one killed it).
func (tm *tmux) waitExit() int {
	tm.t.Helper()
	s := tm.waitScreen("the program to exit", exitedLine.MatchString)
	status, _ := strconv.Atoi(exitedLine.FindStringSubmatch(s)[1])
	return status
}

// webLine returns the line of the screen that shows the entry web.
func webLine(screen string) string {
	for _, l := range strings.Split(screen, "\n") {
		if strings.HasPrefix(l, "web ") {
			return l
		}
	}
	return ""
}

// TestWatchTerminal runs list --watch in a real terminal (tmux): it redraws
// in place while connections pile up in a held listener's queue and drain
// when a service accepts them, its history shows the fill and the drain,
// Ctrl-C ends it with exit 0, and a holder that goes away ends it with
// exit 6 and a message.
func TestWatchTerminal(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	addr := strings.TrimSpace(mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:0").stdout)
	watch := []string{fdclientBin, "--socket", h.Path, "list", "--watch", "--interval", "100ms"}
	tm := startTmux(t, 120, 20, watch...)
	tm.waitScreen("the table", func(s string) bool { return strings.Contains(webLine(s), "0/4096") })

	// Nobody accepts: connections wait in the held socket's queue.
	const n = 5
	for range n {
		dial(t, "tcp", addr)
	}
	tm.waitScreen(fmt.Sprintf("%d queued", n), func(s string) bool {
		return strings.Contains(webLine(s), fmt.Sprintf("%d/4096", n))
	})
	// A service takes them: the queue drains, and the history shows
	// both: the full bar of the peak, then the empty one (a sample taken
	// while the service accepted may lie in between).
	serveQueue(t, h.Path, "web", n)
	screen := tm.waitScreen("the drain in the history", func(s string) bool {
		l := webLine(s)
		return strings.Contains(l, " 0/4096 ") && strings.HasSuffix(l, "▁") &&
			strings.Contains(l, "█") && strings.LastIndex(l, "█") < strings.LastIndex(l, "▁")
	})
	if strings.Count(screen, "NAME ") != 1 || strings.Count(screen, "Every 100ms") != 1 {
		t.Errorf("not redrawn in place: the screen holds several tables:\n%s", screen)
	}
	if l := webLine(screen); !strings.Contains(l, fmt.Sprintf(" %d ", n)) {
		t.Errorf("web's line %q: want the peak %d", l, n)
	}

	tm.run("send-keys", "C-c")
	if code := tm.waitExit(); code != 0 {
		t.Errorf("after Ctrl-C: exit %d, want 0; the screen:\n%s", code, tm.screen())
	}

	// Again, and the holder goes away.
	tm2 := startTmux(t, 120, 20, watch...)
	tm2.waitScreen("the table", func(s string) bool { return webLine(s) != "" })
	h.Server.Close()
	if code := tm2.waitExit(); code != exitUnreachable {
		t.Errorf("after the holder went away: exit %d, want %d; the screen:\n%s", code, exitUnreachable, tm2.screen())
	}
	if s := tm2.screen(); !strings.Contains(s, "fdclient: list --watch: the holder went away") {
		t.Errorf("no message that the holder went away; the screen:\n%s", s)
	}
}

// TestWatchHolderHangs: a holder that stops answering in the middle of a
// watch ends it after --timeout with exit 1, the exit-code table's "no
// answer within --timeout", and a message that says so, not that the
// holder went away (exit 6, TestWatchTerminal). The holder is reached
// through a relay that stops passing its replies on, as a holder stuck on
// its registry's lock would.
func TestWatchHolderHangs(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:0")
	r := startRelay(t, h.Path)
	cmd := fdclientCmd(t, r.path, "--timeout", "300ms", "list", "--watch", "--interval", "100ms")
	// fdclientCmd put --socket first; --timeout is a global flag too.
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out := startPiped(t, cmd)
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "web ") {
	}
	r.hang()
	io.Copy(io.Discard, out)
	err := cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if code != exitError {
		t.Errorf("exit %d (%v), want %d; stderr:\n%s", code, err, exitError, stderr.String())
	}
	for _, want := range []string{"fdclient: list --watch: the holder stopped answering: ", "(no answer within --timeout 300ms)"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q, want %q", stderr.String(), want)
		}
	}
}

// relay passes the messages of each connection made to path on to the
// holder at target and its replies back, until hang: from then on the
// replies go nowhere.
type relay struct {
	path string
	hung atomic.Bool
}

func (r *relay) hang() { r.hung.Store(true) }

func startRelay(t testing.TB, target string) *relay {
	t.Helper()
	r := &relay{path: filepath.Join(testutil.ShortDir(t), "relay.sock")}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: r.path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []*net.UnixConn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	// pass copies messages from src to dst, descriptors included, until
	// src ends; drop says whether to drop a message instead.
	pass := func(src, dst *net.UnixConn, drop func() bool) {
		defer wg.Done()
		defer dst.Close()
		buf, oob := make([]byte, 1<<16), make([]byte, 1<<12)
		for {
			n, oobn, _, _, err := src.ReadMsgUnix(buf, oob)
			if err != nil || n == 0 && oobn == 0 {
				return
			}
			if !drop() {
				dst.WriteMsgUnix(buf[:n], oob[:oobn], nil)
			}
			testutil.CloseRights(oob[:oobn]) // the relay's copies
		}
	}
	never := func() bool { return false }
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			up, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: target, Net: "unixpacket"})
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Add(2)
			go pass(c, up, never)
			go pass(up, c, r.hung.Load)
		}
	}()
	return r
}
