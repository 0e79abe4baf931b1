package servers

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/e2etest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// TestMain builds fdholderd, fdclient and testdata/goserver once.
func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(m, buildGoserver))
}

// buildGoserver builds testdata/goserver into dir and sets goserverBin.
func buildGoserver(dir string) error {
	root, err := testutil.ModuleRoot()
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "goserver")
	cmd := exec.Command("go", "build", "-o", bin, "./test/servers/testdata/goserver")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./test/servers/testdata/goserver: %v\n%s", err, out)
	}
	goserverBin = bin
	return nil
}

// The parameters of the runs, the same for every server so that they
// compare.
const (
	restarts = 5  // graceful restarts under load in each run
	kaRuns   = 1  // graceful restarts in the keep-alive run
	queued   = 20 // connections made while a killed server is dead
	wrkConns = 32 // wrk -c32 (e2etest.StartWrk)

	// readyTimeout bounds a start: a Python server starting beside eight
	// others under load, on a machine shared with other builds, took more
	// than e2etest.StartTimeout.
	readyTimeout = 60 * time.Second
)

// closeHeader makes wrk open a new connection for every request: what a
// held listener protects (a refused connect, a reset of a queued one).
var closeHeader = []string{"-H", "Connection: close"}

// TestServers runs every recipe of docs/servers.md, each server in
// parallel with the others, its cases one after the other. The leak check
// is around the whole: the servers' tests run side by side in this process,
// so one of them cannot tell its descriptors from another's.
func TestServers(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, r := range recipes {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			var lat [2]time.Duration // worst latency: stop-then-start, start-then-stop
			t.Run("Restarts", func(t *testing.T) {
				res := restartRun(t, r, restartOpts{held: true})
				lat[0] = res.LatencyMax
				wantOnlyDrops(t, r, res, restarts)
			})
			t.Run("RestartsWithoutHolder", func(t *testing.T) {
				res := restartRun(t, r, restartOpts{})
				if res.SocketErrors() == 0 {
					t.Errorf("binding the port itself: no socket error in %d restarts, want some: the baseline shows none of the failures the holder prevents", restarts)
				}
			})
			if r.overlap {
				t.Run("Overlapping", func(t *testing.T) {
					res := restartRun(t, r, restartOpts{held: true, overlap: true})
					lat[1] = res.LatencyMax
					wantOnlyDrops(t, r, res, restarts)
				})
				t.Logf("%s: worst latency under load across %d restarts: stop then start %v, start then stop %v", r.name, restarts, lat[0], lat[1])
			}
			t.Run("Kill9", func(t *testing.T) { kill9(t, r) })
			t.Run("KeepAlive", func(t *testing.T) {
				res := restartRun(t, r, restartOpts{held: true, keepAlive: true})
				if res.Connect != 0 || res.Non2xx3xx != 0 || res.Requests == 0 {
					t.Errorf("keep-alive: %v, want no refused connect, no failed reply", res)
				}
				if r.keepAliveClean {
					wantOnlyDrops(t, r, res, kaRuns)
				}
			})
		})
	}
}

// wantOnlyDrops fails the test unless the run, with stops graceful stops
// under load, lost nothing but what the recipe's stop drops by itself: at
// most dropsPerStop read errors (or, with drops400, 400 replies) a stop;
// never a refused connect, a write error (a reset), a timeout or another
// failed reply.
func wantOnlyDrops(t testing.TB, r recipe, res e2etest.WrkResult, stops int) {
	t.Helper()
	dropped, failed := res.Read, res.Non2xx3xx
	if r.drops400 {
		dropped, failed = dropped+failed, 0
	}
	limit := int64(stops * r.dropsPerStop)
	if res.Requests != 0 && res.Connect == 0 && res.Write == 0 && res.Timeout == 0 && failed == 0 && dropped <= limit {
		return
	}
	if limit == 0 {
		t.Errorf("through fdclient exec: %v, want requests, no socket error and no non-2xx reply", res)
		return
	}
	what := "read errors and no non-2xx reply"
	if r.drops400 {
		what = "read errors and non-2xx replies together"
	}
	t.Errorf("through fdclient exec: %v, want requests, no refused connect, write error or timeout, and at most %d %s (%d a stop: connections %s's graceful stop closed unanswered)",
		res, limit, what, r.dropsPerStop, r.name)
}

// restartOpts chooses a run.
type restartOpts struct {
	held      bool // through fdclient exec; else the server binds the port
	overlap   bool // start the next instance, then stop the old one
	keepAlive bool // wrk keeps its connections (no Connection: close)
}

// restartRun starts the server, puts it under wrk's load and restarts it
// gracefully restarts times (kaRuns with keepAlive), and returns wrk's
// report. Each restart waits for a fact: the old instance's exit, the new
// one's first reply (or its readyLog line).
func restartRun(t *testing.T, r recipe, o restartOpts) e2etest.WrkResult {
	s := newServer(t, r, o.held)
	g := s.restart(t)
	s.checkServing(t, g)
	extra := []string{"-s", filepath.Join(s.env.testdata, "pace.lua")}
	if !o.keepAlive {
		extra = append(extra, closeHeader...)
	}
	w := e2etest.StartWrk(t, s.env.dir, s.env.addr(), extra...)
	// wrk gives up if a connect fails before all its connections are up:
	// the first restart waits until it has them (its sockets, proc(5)).
	e2etest.WaitFor(t, e2etest.StartTimeout, "wrk to connect", func() bool {
		return len(e2etest.SocketInodes(w.Pid())) >= wrkConns
	})
	n := restarts
	if o.keepAlive {
		n = kaRuns
	}
	for range n {
		if o.overlap {
			next := s.start(t)
			s.waitReady(t, next, g)
			s.stop(t, g)
			g = next
		} else {
			s.stop(t, g)
			g = s.restart(t)
		}
		s.checkServing(t, g)
	}
	res := w.Stop(t)
	s.stop(t, g)
	order := "stop then start"
	if o.overlap {
		order = "start then stop"
	}
	mode := "through fdclient exec"
	if !o.held {
		mode = "binding the port itself"
	}
	load := "-H 'Connection: close'"
	if o.keepAlive {
		load = "keep-alive"
	}
	t.Logf("%s, %s, %d restarts (%s) under wrk -t2 -c32 -s pace.lua %s: %v", r.name, mode, n, order, load, res)
	return res
}

// server runs instances of one recipe on one port.
type server struct {
	r      recipe
	env    env
	holder *e2etest.Holder // nil: the server binds the port itself
	gens   int             // instances started
}

// newServer prepares a recipe in a directory of its own. Through the
// holder, the port is the one the kernel picked for a socket stored with
// "fdclient listen"; without, a port that was free a moment ago.
func newServer(t testing.TB, r recipe, held bool) *server {
	t.Helper()
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{r: r, env: env{dir: testutil.ShortDir(t), testdata: td, host: "127.0.0.1"}}
	if held {
		s.holder = e2etest.StartHolder(t, s.env.dir)
		out := strings.TrimSpace(string(s.holder.FDClient(t, "listen", "web", "tcp:127.0.0.1:0")))
		_, port, err := net.SplitHostPort(out)
		if err == nil {
			s.env.port, err = strconv.Atoi(port)
		}
		if err != nil {
			t.Fatalf("fdclient listen printed %q: %v", out, err)
		}
	} else {
		// An address of its own in 127.0.0.0/8: between two instances
		// the port is free, and on 127.0.0.1 the clients of the other
		// tests' loads (wrk, thousands of connections a second) soon have
		// it as their local port, in TIME_WAIT for a minute, which makes
		// the next bind fail with EADDRINUSE (tried here: uvicorn, five
		// times in a row). Their local address is 127.0.0.1, so another
		// address does not collide.
		s.env.host = fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
		s.env.port = e2etest.FreePortOn(t, s.env.host)
	}
	r.prepare(t, &s.env)
	return s
}

// instance is one running generation of the server.
type instance struct {
	proc *e2etest.Process
	gen  int
}

// argv is the instance's command line, exactly as docs/servers.md gives
// it: "fdclient exec [--vars V] web=tcp:127.0.0.1:PORT -- SERVER..." (the
// name is held already, so every instance gets the same socket), or the
// server alone.
func (s *server) argv(gen int) []string {
	cmd := s.r.command(&s.env, s.holder != nil, gen)
	if s.holder == nil {
		return cmd
	}
	args := []string{e2etest.FdclientBin, "--socket", s.holder.Socket, "exec"}
	if s.r.vars != "" {
		args = append(args, "--vars", s.r.vars)
	}
	args = append(args, "web=tcp:"+s.env.addr(), "--")
	return append(args, cmd...)
}

// start starts the next instance, without waiting for it to serve. At the
// end of the test, it and every process it started are killed if still
// running.
func (s *server) start(t testing.TB) *instance {
	t.Helper()
	g := &instance{gen: s.gens}
	s.gens++
	log := filepath.Join(s.env.dir, fmt.Sprintf("%s-%d.log", s.r.name, g.gen))
	g.proc = e2etest.StartProcess(t, fmt.Sprintf("%s #%d", s.r.name, g.gen), s.env.dir, log, "", s.argv(g.gen)...)
	t.Cleanup(func() {
		tree := descendants(t, g.proc.Pid())
		g.proc.Kill()
		for _, p := range tree {
			p.Kill(t)
		}
	})
	return g
}

// restart starts the next instance (the first, or one after the last
// stopped), and waits until it serves. Binding the port itself, an instance can fail to bind:
// with the port closed between two instances, a client elsewhere on the
// machine may get it as its connection's local port (ip_local_port_range
// holds the port the kernel once picked for the test). That is one more
// failure of restarting without the holder: it is logged, and the
// instance started again, as a supervisor would.
func (s *server) restart(t testing.TB) *instance {
	t.Helper()
	for range 5 {
		g := s.start(t)
		err := s.waitServing(t, g, nil)
		if err == nil {
			return g
		}
		if s.holder != nil {
			t.Fatal(err)
		}
		t.Logf("binding the port itself: %v; starting it again", err)
	}
	t.Fatalf("binding the port itself: 5 instances in a row exited before serving")
	return nil
}

// waitReady waits until instance g serves, and fails the test if it exits
// first.
func (s *server) waitReady(t testing.TB, g *instance, old *instance) {
	t.Helper()
	if err := s.waitServing(t, g, old); err != nil {
		t.Fatal(err)
	}
}

// waitServing waits until instance g serves, or returns an error if it
// exits first. First the facts a recipe may
// name: its readyLog line, its number of worker processes. Then a reply:
// with old stopped (or none), the first reply on the port can only come
// from g; while old still runs (an overlapping restart), it must come from
// one of g's processes (pidHeader), and replies from old are ignored.
func (s *server) waitServing(t testing.TB, g *instance, old *instance) error {
	t.Helper()
	var exited error
	e2etest.WaitFor(t, readyTimeout, g.proc.Name+" to start", func() bool {
		if g.proc.Exited() {
			exited = fmt.Errorf("%s exited before serving: %v", g.proc.Name, g.proc.Err())
			return true
		}
		if s.r.readyLog != "" {
			b, err := os.ReadFile(g.proc.OutPath)
			if err != nil || !strings.Contains(string(b), s.r.readyLog) {
				return false
			}
		}
		return len(treePids(t, g.proc.Pid())) > s.r.workers
	})
	if exited != nil || old != nil && s.r.acceptAtFork {
		return exited // its workers accept as soon as they exist
	}
	// A reply waits in the held socket's queue as long as it takes; a
	// refused connect (no holder) or a reply from old is tried again. With
	// workers, each must have answered: one that was just forked has not
	// yet installed its signal handlers, and gunicorn's and uWSGI's
	// masters, stopped then, wait for a worker that never heard the stop.
	need := max(1, s.r.workers)
	if s.r.acceptAtFork {
		need = 1
	}
	timeout := readyTimeout
	if old != nil || need > 1 {
		timeout = 2 * time.Second
	}
	answered := map[int]bool{}
	e2etest.WaitFor(t, readyTimeout, g.proc.Name+" to serve", func() bool {
		if g.proc.Exited() {
			exited = fmt.Errorf("%s exited before serving: %v", g.proc.Name, g.proc.Err())
			return true
		}
		pid, err := probe(s.env.addr(), timeout)
		if err != nil {
			return false
		}
		if !s.r.pidHeader {
			return true
		}
		if slices.Contains(treePids(t, g.proc.Pid()), pid) {
			answered[pid] = true
		}
		return len(answered) >= need
	})
	return exited
}

// stop stops instance g with the recipe's graceful signal and waits for
// it, and every process it started, to be gone.
func (s *server) stop(t testing.TB, g *instance) {
	t.Helper()
	tree := descendants(t, g.proc.Pid())
	g.proc.Signal(t, s.r.stop)
	if err := g.proc.Wait(t, e2etest.ExitTimeout); err != nil {
		t.Fatalf("%s after %v: %v, want exit status 0", g.proc.Name, s.r.stop, err)
	}
	e2etest.WaitFor(t, e2etest.ExitTimeout, g.proc.Name+"'s processes to exit", func() bool {
		for _, p := range tree {
			if p.Alive() {
				return false
			}
		}
		return true
	})
}

// checkServing proves which process serves, with the holder: the one
// socket listening on the port is the held one, open in fdholderd and in
// instance g's processes only, and none of them listens on a socket of its
// own. Old instances are gone (stop waited), so the replies come from g.
func (s *server) checkServing(t testing.TB, g *instance) {
	t.Helper()
	if s.holder == nil {
		return
	}
	inodes := e2etest.ListenersOn(t, s.env.port)
	if len(inodes) != 1 {
		t.Fatalf("%d sockets listen on port %d (inodes %v), want exactly one: the held one (a server that bound its own?)", len(inodes), s.env.port, inodes)
	}
	held := inodes[0]
	tree := treePids(t, g.proc.Pid())
	want := append([]int{s.holder.Proc.Pid()}, tree...)
	for _, pid := range e2etest.OpenersOf(held) {
		if !slices.Contains(want, pid) {
			t.Fatalf("process %d, not of %s (%v) nor fdholderd, has the held socket open", pid, g.proc.Name, tree)
		}
	}
	if !e2etest.SocketInodes(s.holder.Proc.Pid())[held] || !e2etest.SocketInodes(g.proc.Pid())[held] {
		t.Fatalf("the socket listening on port %d (inode %d) is not open in both fdholderd and %s", s.env.port, held, g.proc.Name)
	}
	listeners := e2etest.TCPListeners(t)
	for _, pid := range tree {
		for inode := range e2etest.SocketInodes(pid) {
			if port, ok := listeners[inode]; ok && inode != held {
				t.Fatalf("%s: process %d listens on a socket of its own (inode %d, port %d)", g.proc.Name, pid, inode, port)
			}
		}
	}
	if s.r.pidHeader {
		pid, err := probe(s.env.addr(), readyTimeout)
		if err != nil {
			t.Fatalf("%s: %v", g.proc.Name, err)
		}
		if !slices.Contains(tree, pid) {
			t.Fatalf("a reply came from pid %d, not from %s (%v)", pid, g.proc.Name, tree)
		}
	}
}

// probe sends one request on a new connection and returns the X-Pid of
// the reply (0 without one); the reply must be 200 with "ok\n".
func probe(addr string, timeout time.Duration) (int, error) {
	h, err := e2etest.Get(addr, timeout)
	if err != nil {
		return 0, err
	}
	pid, _ := strconv.Atoi(h.Get("X-Pid"))
	return pid, nil
}

// descendants returns pid and every process under it, with their
// identities, so that a pid reused later is never signalled.
func descendants(t testing.TB, pid int) []e2etest.Identity {
	t.Helper()
	var ids []e2etest.Identity
	for _, p := range treePids(t, pid) {
		if _, start, ok := e2etest.Stat(p); ok {
			ids = append(ids, e2etest.Identity{Pid: p, Start: start})
		}
	}
	return ids
}

// treePids returns pid and the pids of every process under it.
func treePids(t testing.TB, pid int) []int {
	t.Helper()
	pids := []int{pid}
	for i := 0; i < len(pids); i++ {
		if _, _, ok := e2etest.Stat(pids[i]); !ok {
			continue
		}
		pids = append(pids, e2etest.Children(t, pids[i])...)
	}
	return pids
}
