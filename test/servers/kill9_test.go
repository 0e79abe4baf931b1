package servers

import (
	"io"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/e2etest"
)

// kill9 crashes the server: a connection one of its processes accepted
// waits for the rest of its request, then every process of the server gets
// SIGKILL at once (as systemd kills a unit's cgroup). Only that accepted
// connection may be lost: the connections made while no server process
// exists wait in the held socket's queue (tcp(7), listen(2)) and the
// successor, started by the same recipe, answers every one.
func kill9(t *testing.T, r recipe) {
	s := newServer(t, r, true)
	g := s.restart(t)
	s.checkServing(t, g)
	tree := descendants(t, g.proc.Pid())

	inflight, err := net.DialTimeout("tcp", s.env.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer inflight.Close()
	if _, err := io.WriteString(inflight, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatalf("write a partial request: %v", err)
	}
	acceptor := e2etest.WaitAccepted(t, inflight, tree)

	for _, p := range tree {
		if err := syscall.Kill(p.Pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatalf("kill -9 %d: %v", p.Pid, err)
		}
	}
	_ = g.proc.Wait(t, e2etest.ExitTimeout) // killed: an error, as expected
	e2etest.WaitFor(t, e2etest.ExitTimeout, "the killed processes to be gone", func() bool {
		for _, p := range tree {
			if p.Alive() {
				return false
			}
		}
		return true
	})
	if err := e2etest.ReadReply(inflight, 5*time.Second); err == nil {
		t.Fatalf("the connection process %d had accepted got a reply after kill -9, want none", acceptor)
	}

	held := e2etest.ListenersOn(t, s.env.port)
	if len(held) != 1 || !slices.Equal(e2etest.OpenersOf(held[0]), []int{s.holder.Proc.Pid()}) {
		t.Fatalf("after kill -9, listeners %v on port %d; want one, open in fdholderd (pid %d) alone", held, s.env.port, s.holder.Proc.Pid())
	}
	conns := make([]net.Conn, queued)
	for i := range conns {
		c, err := net.DialTimeout("tcp", s.env.addr(), 5*time.Second)
		if err != nil {
			t.Fatalf("connect %d while no server runs: %v, want the held socket to queue it", i, err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, e2etest.Request); err != nil {
			t.Fatalf("send the request on connection %d: %v", i, err)
		}
		conns[i] = c
	}
	if e, ok := s.holder.Entry(t, "web"); !ok || e.Queued < queued {
		t.Fatalf(`fdclient list: entry "web" %+v, want at least %d connections queued`, e, queued)
	}

	next := s.start(t)
	answered := 0
	for i, c := range conns {
		if err := e2etest.ReadReply(c, readyTimeout); err != nil {
			t.Errorf("connection %d, made while no server ran: %v", i, err)
			continue
		}
		answered++
	}
	s.checkServing(t, next)
	t.Logf("%s: kill -9 of %d processes lost the connection process %d had accepted; the successor answered %d of the %d connections made while none ran",
		r.name, len(tree), acceptor, answered, queued)
	s.stop(t, next)
}
