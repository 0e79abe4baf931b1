package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// gunicorn is the real server of these tests: Debian's python3-gunicorn,
// which honours LISTEN_FDS (gunicorn/systemd.py listen_fds; gunicorn/sock.py
// create_sockets wraps fds 3.. and returns before binding any address), and
// whose master, on SIGTERM, closes its listeners, lets its sync workers
// finish the request in hand and exits 0 (arbiter.py stop).

// pythonForGunicorn finds an interpreter that can import gunicorn:
// $FDHOLDER_PYTHON, then Debian's /usr/bin/python3, then python3 on PATH
// (which may be a pyenv one without Debian's packages). It returns the path,
// or "" and what was tried.
var pythonForGunicorn = sync.OnceValues(func() (string, string) {
	var candidates []string
	if p := os.Getenv("FDHOLDER_PYTHON"); p != "" {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3")
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	var tried []string
	for _, py := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, py, "-c", "import gunicorn").CombinedOutput()
		cancel()
		if err == nil {
			return py, ""
		}
		tried = append(tried, fmt.Sprintf("%s: %v %s", py, err, strings.TrimSpace(string(out))))
	}
	return "", strings.Join(tried, "; ")
})

// needPython returns an interpreter that can run gunicorn, or skips (fails
// under FDHOLDER_REQUIRE_PEERS) the test.
func needPython(t testing.TB) string {
	t.Helper()
	py, tried := pythonForGunicorn()
	testutil.NeedPeer(t, py != "", "no python3 can import gunicorn (apt-get install python3-gunicorn, or set FDHOLDER_PYTHON); tried %s", tried)
	return py
}

// Gunicorn's settings, the same for every test so that runs compare.
// --timeout bounds how long a sync worker sleeps in select(2) before it
// notices its master died (it checks getppid, workers/sync.py), at half
// the value; --graceful-timeout bounds a SIGTERM stop.
var gunicornArgs = []string{
	"--workers", "2",
	"--worker-class", "sync",
	"--timeout", "6",
	"--graceful-timeout", "3",
	"--log-level", "info",
	"--access-logformat", "%(s)s",
}

// gunicornServer starts generation after generation of gunicorn on one
// port, either through "fdclient exec" (holder set) or binding the port
// itself (holder nil: the baseline).
type gunicornServer struct {
	python  string
	dir     string   // the test's directory: logs
	app     string   // testdata, where app.py is
	holder  *holderd // nil: gunicorn binds the port itself
	port    int
	started int // generations started so far
}

func newGunicornServer(t testing.TB, dir string, h *holderd) *gunicornServer {
	t.Helper()
	app, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	g := &gunicornServer{python: needPython(t), dir: dir, app: app, holder: h}
	if h == nil {
		g.port = freePort(t)
	}
	return g
}

// addr is the server's address; known once the first generation started.
func (g *gunicornServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)) }

// accessLog is the file where generation gen logs one line per request.
func (g *gunicornServer) accessLog(gen int) string {
	return filepath.Join(g.dir, fmt.Sprintf("access-%d.log", gen))
}

// start starts the next generation and waits until it serves. With the
// holder, the first generation is started with web=tcp:127.0.0.1:0, which
// binds a free port and stores the socket, and the port is read back from
// "fdclient list --json"; the next generations ask for "web" alone, which
// fails unless the holder has it: every generation gets the same socket.
// At the end of the test a generation still running is killed with its
// workers.
func (g *gunicornServer) start(t testing.TB) *process {
	t.Helper()
	gen := g.started
	g.started++
	args := g.baseArgs(gen)
	if g.holder == nil {
		args = append(args, "--bind", g.addr())
	} else {
		spec := "web"
		if gen == 0 {
			spec = "web=tcp:127.0.0.1:0"
		}
		args = append([]string{fdclientBin, "--socket", g.holder.socket, "exec", spec, "--"}, args...)
	}
	args = append(args, "app:app")
	p := g.launch(t, gen, args)
	if g.holder != nil && gen == 0 {
		var e listEntry
		testutil.WaitFor(t, startTimeout, `fdclient exec to store "web"`, func() bool {
			if p.exited() {
				t.Fatalf("gunicorn #0 exited before the socket was stored: %v", p.err)
			}
			var ok bool
			e, ok = g.holder.entry(t, "web")
			return ok
		})
		_, port, err := net.SplitHostPort(e.Address)
		if err == nil {
			g.port, err = strconv.Atoi(port)
		}
		if err != nil || g.port == 0 || e.Network != "tcp" || !e.Listening {
			t.Fatalf(`fdclient list --json: entry "web" is %+v, want a listening tcp socket on a port: %v`, e, err)
		}
	}
	g.waitServing(t, p)
	return p
}

// baseArgs is the command line of generation gen without its socket and
// its app: gunicorn with the settings every test shares and its own access
// log.
func (g *gunicornServer) baseArgs(gen int) []string {
	args := []string{g.python, "-m", "gunicorn", "--chdir", g.app, "--access-logfile", g.accessLog(gen)}
	return append(args, gunicornArgs...)
}

// launch starts generation gen of gunicorn with args, its output in
// gunicorn-GEN.log. At the end of the test a generation still running is
// killed with its workers.
func (g *gunicornServer) launch(t testing.TB, gen int, args []string) *process {
	t.Helper()
	p := startProcess(t, fmt.Sprintf("gunicorn #%d", gen), g.app, g.log(gen), "", args...)
	t.Cleanup(func() {
		if p.exited() {
			return
		}
		var workers []procIdentity
		for _, pid := range procChildren(t, p.pid()) {
			if _, start, ok := procStat(pid); ok {
				workers = append(workers, procIdentity{pid: pid, start: start})
			}
		}
		_ = p.cmd.Process.Kill()
		<-p.done
		for _, w := range workers {
			w.kill(t)
		}
	})
	return p
}

// log is the file where generation gen writes its output.
func (g *gunicornServer) log(gen int) string {
	return filepath.Join(g.dir, fmt.Sprintf("gunicorn-%d.log", gen))
}

// waitServing waits until the server answers a request with the app's 200
// "ok\n". With the holder the first request already waits in the held
// socket's queue until a worker accepts it; without it, requests are
// refused until gunicorn has bound the port.
func (g *gunicornServer) waitServing(t testing.TB, p *process) {
	t.Helper()
	testutil.WaitFor(t, startTimeout, p.name+" to serve on "+g.addr(), func() bool {
		if p.exited() {
			t.Fatalf("%s exited before serving: %v", p.name, p.err)
		}
		c, err := net.DialTimeout("tcp", g.addr(), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		if _, err := io.WriteString(c, request); err != nil {
			return false
		}
		return readReply(c, 5*time.Second) == nil
	})
}

// workers waits until gunicorn's master has its two workers and returns
// them.
func (g *gunicornServer) workers(t testing.TB, p *process) []procIdentity {
	t.Helper()
	var ws []procIdentity
	testutil.WaitFor(t, startTimeout, p.name+"'s 2 workers", func() bool {
		ws = ws[:0]
		for _, pid := range procChildren(t, p.pid()) {
			if _, start, ok := procStat(pid); ok {
				ws = append(ws, procIdentity{pid: pid, start: start})
			}
		}
		return len(ws) == 2
	})
	return ws
}

// requestsServed counts the lines of generation gen's access log: one per
// request answered. Every line must be the status 200.
func (g *gunicornServer) requestsServed(t testing.TB, gen int) int {
	t.Helper()
	f, err := os.Open(g.accessLog(gen))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatalf("access log of gunicorn #%d: %v", gen, err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() != "200" {
			t.Fatalf("access log of gunicorn #%d: line %d is %q, want the status 200", gen, n+1, sc.Text())
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("access log of gunicorn #%d: %v", gen, err)
	}
	return n
}

// checkServesHeldSocket proves that gunicorn serves the socket the holder
// holds and bound none of its own: the only TCP socket listening on the port
// is one fdholderd has open, gunicorn's master and workers have it open,
// and none of them has any other listening TCP socket.
func (g *gunicornServer) checkServesHeldSocket(t testing.TB, p *process) {
	t.Helper()
	held := g.heldInode(t)
	listeners := tcpListeners(t)
	if !socketInodes(g.holder.proc.pid())[held] {
		t.Fatalf("the socket listening on port %d (inode %d) is not open in fdholderd (pid %d)", g.port, held, g.holder.proc.pid())
	}
	pids := append([]int{p.pid()}, procChildren(t, p.pid())...)
	for _, pid := range pids {
		inodes := socketInodes(pid)
		if !inodes[held] {
			t.Fatalf("%s: process %d does not have the held socket (inode %d) open", p.name, pid, held)
		}
		for inode := range inodes {
			if port, ok := listeners[inode]; ok && inode != held {
				t.Fatalf("%s: process %d listens on a socket of its own (inode %d, port %d)", p.name, pid, inode, port)
			}
		}
	}
	t.Logf("%s: master and workers %v serve socket inode %d on port %d, the one fdholderd (pid %d) holds; no socket of their own",
		p.name, pids, held, g.port, g.holder.proc.pid())
}

// request is a whole HTTP request; the server closes the connection after
// its reply.
const request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

// readReply reads the reply to request on c and checks that it is the
// app's: 200 with the body "ok\n".
func readReply(c net.Conn, timeout time.Duration) error {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read reply body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		return fmt.Errorf("reply %q with body %q, want 200 with %q", resp.Status, body, "ok\n")
	}
	return nil
}
