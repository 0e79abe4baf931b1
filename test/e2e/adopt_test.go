package e2e

import (
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/fdholder/fdholder/internal/e2etest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// wrkGapTimeout is wrk's request timeout across a switch or a restart:
// longer than any time without a server that the test lets pass (the old
// server's exit, then the new one's start, each bounded by the e2etest
// waits), so that a request queued on the held socket meanwhile counts as
// a timeout only when the test fails on its own. A fixed 10 s counted 96
// requests queued across slow restarts as errors at a load of 40.
const wrkGapTimeout = e2etest.ExitTimeout + e2etest.StartTimeout

// gunicornListeningRE is the line gunicorn's master logs once it has bound
// its socket (arbiter.py start): with --bind 127.0.0.1:0, the port the
// kernel picked.
var gunicornListeningRE = regexp.MustCompile(`Listening at: http://127\.0\.0\.1:(\d+) `)

// TestAdoptUnderLoad onboards a live server that never heard of fdholder,
// the way docs/operations.md tells an operator to: gunicorn #0 binds its own
// port and serves under wrk's load; "fdclient adopt" copies its listener
// into the holder while it serves; gunicorn #0 is stopped (SIGTERM);
// connections are made while no server runs; gunicorn #1 is started
// through "fdclient exec web" and serves the very same socket. With the
// adoption, wrk sees no socket error across the whole switch and the
// connections made in the gap are answered by gunicorn #1. Without it (the
// baseline: gunicorn #1 binds the port again itself) they are refused.
func TestAdoptUnderLoad(t *testing.T) {
	tests := []struct {
		name  string
		adopt bool
	}{
		{name: "Adopted", adopt: true},
		{name: "NotAdopted", adopt: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			adoptUnderLoad(t, tt.adopt)
		})
	}
}

func adoptUnderLoad(t *testing.T, adopt bool) {
	dir := t.TempDir()
	h := e2etest.StartHolder(t, dir)
	g := newGunicornServer(t, dir, h)

	// Generation 0 knows nothing of the holder: it binds its own port,
	// and logs it. With the adoption, a port the kernel picks: nothing
	// binds it again. The baseline binds it again after a gap, so it takes
	// one outside the ephemeral range, which nothing takes meanwhile (see
	// e2etest.FreePortOn).
	g.started = 1
	bind := "127.0.0.1:0"
	if !adopt {
		bind = net.JoinHostPort("127.0.0.1", itoa(e2etest.FreePort(t)))
	}
	p := g.launch(t, 0, append(g.baseArgs(0), "--bind", bind, "app:app"))
	e2etest.WaitFor(t, e2etest.StartTimeout, "gunicorn #0 to log the port it bound", func() bool {
		if p.Exited() {
			t.Fatalf("gunicorn #0 exited before binding: %v", p.Err())
		}
		b, err := os.ReadFile(g.log(0))
		m := gunicornListeningRE.FindSubmatch(b)
		if err != nil || m == nil {
			return false
		}
		g.port, err = strconv.Atoi(string(m[1]))
		return err == nil
	})
	g.waitServing(t, p)
	own := g.heldInode(t) // the one socket on the port: gunicorn's own
	// The port has no server for longer than in a restart (the test
	// checks every process's descriptors, makes its connections and reads
	// the queue before it starts gunicorn #1): on a loaded machine, over
	// 10 s. A request still waiting in the queue then is delayed, not
	// refused or reset; give wrk the time to see it answered.
	w := e2etest.StartWrkTimeout(t, dir, g.addr(), wrkGapTimeout)
	waitLoad(t, g, 0)

	if adopt {
		pid := itoa(p.Pid())
		out := string(h.FDClient(t, "adopt", "--dry-run", "--pid", pid, "web", "tcp:"+g.addr()))
		if !strings.HasPrefix(out, `would adopt "web" from fd `) || !strings.HasSuffix(out, ": tcp "+g.addr()+", listening\n") {
			t.Fatalf("fdclient adopt --dry-run: %q, want what it would adopt", out)
		}
		if es := h.List(t); len(es) != 0 {
			t.Fatalf("after a dry run the holder holds %+v, want nothing", es)
		}
		out = string(h.FDClient(t, "adopt", "--pid", pid, "web", "tcp:"+g.addr()))
		if !strings.HasPrefix(out, `adopted "web" from fd `) || !strings.Contains(out, " of process "+pid+" (") {
			t.Fatalf("fdclient adopt: %q, want what it adopted", out)
		}
		t.Logf("fdclient adopt: %s", strings.TrimSpace(out))
		e, ok := h.Entry(t, "web")
		if !ok || e.Network != "tcp" || e.Address != g.addr() || !e.Listening {
			t.Fatalf(`fdclient list --json: "web" is %+v (held %v), want the listener on %s`, e, ok, g.addr())
		}
		// The holder holds gunicorn's very socket (one inode, open in
		// both), and gunicorn keeps serving on it undisturbed.
		if inode := g.heldInode(t); inode != own || !e2etest.SocketInodes(h.Proc.Pid())[own] || !e2etest.SocketInodes(p.Pid())[own] {
			t.Fatalf("after adopt: the listener on port %d is inode %d, want gunicorn's own %d open in both fdholderd and gunicorn", g.port, inode, own)
		}
		served := g.requestsServed(t, 0)
		e2etest.WaitFor(t, e2etest.StartTimeout, "gunicorn #0 to serve on after the adoption", func() bool {
			return g.requestsServed(t, 0) >= served+loadPerGeneration
		})
	}

	p.Signal(t, syscall.SIGTERM)
	if err := p.Wait(t, e2etest.ExitTimeout); err != nil {
		t.Fatalf("%s after SIGTERM: %v, want exit status 0", p.Name, err)
	}
	// No server process is left: the master reaps its workers before it
	// exits (arbiter.py stop). With the adoption the socket lives on in
	// fdholderd alone; without it, it is gone.
	if adopt {
		e2etest.WaitFor(t, e2etest.ExitTimeout, "fdholderd alone to have the socket open", func() bool {
			return slices.Equal(e2etest.OpenersOf(own), []int{h.Proc.Pid()})
		})
	} else if ls := e2etest.ListenersOn(t, g.port); len(ls) != 0 {
		t.Fatalf("sockets %v listen on port %d after gunicorn #0 exited, want none", ls, g.port)
	}

	// Connections made while no server runs.
	var conns []net.Conn
	refused := 0
	for i := range queuedWhileDead {
		c, err := net.DialTimeout("tcp", g.addr(), e2etest.StartTimeout)
		if err != nil {
			if adopt || !e2etest.IsRefused(err) {
				t.Fatalf("connect %d to %s while no server runs: %v", i, g.addr(), err)
			}
			refused++
			continue
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, e2etest.Request); err != nil {
			t.Fatalf("send the request on connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	if adopt {
		e, _ := h.Entry(t, "web")
		if e.Queued < queuedWhileDead {
			t.Fatalf(`fdclient list --json: "web" has %d connections queued (backlog %d), want at least the %d made while no server runs`, e.Queued, e.Backlog, queuedWhileDead)
		}
		t.Logf("with no server process, %d connections were made and queued on the adopted socket (fdclient list: queued %d, backlog %d)", queuedWhileDead, e.Queued, e.Backlog)
	} else {
		if refused != queuedWhileDead {
			t.Fatalf("without the adoption %d of %d connects while no server ran were refused, want all", refused, queuedWhileDead)
		}
		t.Logf("without the adoption, %d of %d connects while no server ran were refused (ECONNREFUSED)", refused, queuedWhileDead)
	}

	// Generation 1: through "fdclient exec web" (the new ExecStart), or
	// binding the port itself.
	var next *e2etest.Process
	if adopt {
		next = g.start(t)
		g.checkServesHeldSocket(t, next)
	} else {
		g.started++
		next = g.launch(t, 1, append(g.baseArgs(1), "--bind", g.addr(), "app:app"))
		g.waitServing(t, next)
	}
	for i, c := range conns {
		if err := e2etest.ReadReply(c, e2etest.StartTimeout); err != nil {
			t.Errorf("connection %d, made while no server ran: %v", i, err)
		}
	}
	if adopt {
		t.Logf("%s answered the %d connections made while no server ran", next.Name, len(conns))
	}
	waitLoad(t, g, 1)
	res := w.Stop(t)
	next.Signal(t, syscall.SIGTERM)
	if err := next.Wait(t, e2etest.ExitTimeout); err != nil {
		t.Fatalf("%s after SIGTERM: %v, want exit status 0", next.Name, err)
	}
	t.Logf("wrk -t2 -c32 across the switch: %v; requests served by gunicorn #0 and #1: %d, %d", res, g.requestsServed(t, 0), g.requestsServed(t, 1))
	if !adopt {
		if res.SocketErrors() == 0 {
			t.Errorf("without the adoption: no socket error across the restart, want some: the baseline shows none of the failures adoption prevents")
		}
		return
	}
	if res.SocketErrors() != 0 || res.Non2xx3xx != 0 || res.Requests == 0 {
		t.Errorf("adopted: %d socket errors (connect %d, read %d, write %d, timeout %d), %d non-2xx/3xx replies and %d requests; want no error and some requests",
			res.SocketErrors(), res.Connect, res.Read, res.Write, res.Timeout, res.Non2xx3xx, res.Requests)
	}
}
