package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/e2etest"
)

// gunicorn is the real server of these tests: Debian's python3-gunicorn,
// which honours LISTEN_FDS (gunicorn/systemd.py listen_fds; gunicorn/sock.py
// create_sockets wraps fds 3.. and returns before binding any address), and
// whose master, on SIGTERM, closes its listeners, lets its sync workers
// finish the request in hand and exits 0 (arbiter.py stop).

// needPython returns an interpreter that can run gunicorn, or skips (fails
// under FDHOLDER_REQUIRE_PEERS) the test.
func needPython(t testing.TB) string {
	t.Helper()
	return e2etest.NeedPython(t, "gunicorn", "python3-gunicorn")
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
	dir     string          // the test's directory: logs
	app     string          // testdata, where app.py is
	holder  *e2etest.Holder // nil: gunicorn binds the port itself
	port    int
	started int // generations started so far
}

func newGunicornServer(t testing.TB, dir string, h *e2etest.Holder) *gunicornServer {
	t.Helper()
	app, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	g := &gunicornServer{python: needPython(t), dir: dir, app: app, holder: h}
	if h == nil {
		g.port = e2etest.FreePort(t)
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
func (g *gunicornServer) start(t testing.TB) *e2etest.Process {
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
		args = append([]string{e2etest.FdclientBin, "--socket", g.holder.Socket, "exec", spec, "--"}, args...)
	}
	args = append(args, "app:app")
	p := g.launch(t, gen, args)
	if g.holder != nil && gen == 0 {
		var e e2etest.ListEntry
		e2etest.WaitFor(t, e2etest.StartTimeout, `fdclient exec to store "web"`, func() bool {
			if p.Exited() {
				t.Fatalf("gunicorn #0 exited before the socket was stored: %v", p.Err())
			}
			var ok bool
			e, ok = g.holder.Entry(t, "web")
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
func (g *gunicornServer) launch(t testing.TB, gen int, args []string) *e2etest.Process {
	t.Helper()
	p := e2etest.StartProcess(t, fmt.Sprintf("gunicorn #%d", gen), g.app, g.log(gen), "", args...)
	t.Cleanup(func() {
		if p.Exited() {
			return
		}
		var workers []e2etest.Identity
		for _, pid := range e2etest.Children(t, p.Pid()) {
			if _, start, ok := e2etest.Stat(pid); ok {
				workers = append(workers, e2etest.Identity{Pid: pid, Start: start})
			}
		}
		p.Kill()
		for _, w := range workers {
			w.Kill(t)
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
func (g *gunicornServer) waitServing(t testing.TB, p *e2etest.Process) {
	t.Helper()
	e2etest.WaitFor(t, e2etest.StartTimeout, p.Name+" to serve on "+g.addr(), func() bool {
		if p.Exited() {
			t.Fatalf("%s exited before serving: %v", p.Name, p.Err())
		}
		c, err := net.DialTimeout("tcp", g.addr(), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		if _, err := io.WriteString(c, e2etest.Request); err != nil {
			return false
		}
		return e2etest.ReadReply(c, 5*time.Second) == nil
	})
}

// workers waits until gunicorn's master has its two workers and returns
// them.
func (g *gunicornServer) workers(t testing.TB, p *e2etest.Process) []e2etest.Identity {
	t.Helper()
	var ws []e2etest.Identity
	e2etest.WaitFor(t, e2etest.StartTimeout, p.Name+"'s 2 workers", func() bool {
		ws = ws[:0]
		for _, pid := range e2etest.Children(t, p.Pid()) {
			if _, start, ok := e2etest.Stat(pid); ok {
				ws = append(ws, e2etest.Identity{Pid: pid, Start: start})
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
func (g *gunicornServer) checkServesHeldSocket(t testing.TB, p *e2etest.Process) {
	t.Helper()
	held := g.heldInode(t)
	listeners := e2etest.TCPListeners(t)
	if !e2etest.SocketInodes(g.holder.Proc.Pid())[held] {
		t.Fatalf("the socket listening on port %d (inode %d) is not open in fdholderd (pid %d)", g.port, held, g.holder.Proc.Pid())
	}
	pids := append([]int{p.Pid()}, e2etest.Children(t, p.Pid())...)
	for _, pid := range pids {
		inodes := e2etest.SocketInodes(pid)
		if !inodes[held] {
			t.Fatalf("%s: process %d does not have the held socket (inode %d) open", p.Name, pid, held)
		}
		for inode := range inodes {
			if port, ok := listeners[inode]; ok && inode != held {
				t.Fatalf("%s: process %d listens on a socket of its own (inode %d, port %d)", p.Name, pid, inode, port)
			}
		}
	}
	t.Logf("%s: master and workers %v serve socket inode %d on port %d, the one fdholderd (pid %d) holds; no socket of their own",
		p.Name, pids, held, g.port, g.holder.Proc.Pid())
}
