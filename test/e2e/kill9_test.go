package e2e

import (
	"bufio"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// queuedWhileDead is how many connections the test opens while no server
// process exists.
const queuedWhileDead = 20

// TestKill9LosesOnlyAcceptedConnections kills gunicorn's master with
// kill -9, makes sure its workers are gone too, and connects while no
// server process exists.
//
// With the holder, the listening socket lives on in fdholderd: the kernel
// completes the handshakes and queues the connections (tcp(7), listen(2)),
// and the successor started through "fdclient exec" answers every one. The
// only connection lost is the one a worker had accepted when it died.
// Without the holder, the socket died with the last process that had it
// open, and every connect is refused (ECONNREFUSED).
func TestKill9LosesOnlyAcceptedConnections(t *testing.T) {
	tests := []struct {
		name   string
		holder bool
	}{
		{name: "WithHolder", holder: true},
		{name: "WithoutHolder", holder: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			dir := t.TempDir()
			var h *holderd
			if tt.holder {
				h = startHolder(t, dir)
			}
			g := newGunicornServer(t, dir, h)
			p := g.start(t)
			if tt.holder {
				g.checkServesHeldSocket(t, p)
			}
			workers := g.workers(t, p)

			// A connection a worker has accepted: its request is incomplete,
			// so the sync worker blocks reading the rest of the headers.
			inflight := dial(t, g.addr())
			if _, err := io.WriteString(inflight, "GET / HTTP/1.1\r\n"); err != nil {
				t.Fatalf("write a partial request: %v", err)
			}
			acceptor := waitAccepted(t, inflight, workers)
			t.Logf("worker %d accepted the connection from %v and waits for the rest of its request", acceptor, inflight.LocalAddr())

			p.signal(t, syscall.SIGKILL)
			if err := p.wait(t, exitTimeout); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("%s after kill -9: %v, want killed by the signal", p.name, err)
			}
			reapWorkers(t, workers)

			// The accepted connection died with its worker, unanswered: this
			// is what a kill -9 loses, with or without the holder.
			if err := readReply(inflight, 5*time.Second); err == nil {
				t.Fatalf("the connection accepted by the killed worker %d got a reply, want none", acceptor)
			} else {
				t.Logf("the connection accepted by the killed worker is lost, as expected: %v", err)
			}

			if !tt.holder {
				if ls := listenersOn(t, g.port); len(ls) != 0 {
					t.Fatalf("sockets %v still listen on port %d after the kill", ls, g.port)
				}
				refused := 0
				for i := range queuedWhileDead {
					c, err := net.DialTimeout("tcp", g.addr(), 5*time.Second)
					if err == nil {
						c.Close()
						t.Fatalf("connect %d to %s with no server and no holder succeeded, want ECONNREFUSED", i, g.addr())
					}
					if !isRefused(err) {
						t.Fatalf("connect %d to %s: %v, want ECONNREFUSED", i, g.addr(), err)
					}
					refused++
				}
				t.Logf("without the holder, %d of %d connects while the server was dead were refused (ECONNREFUSED)", refused, queuedWhileDead)
				return
			}

			// With the holder: only fdholderd has the listening socket open.
			held := g.heldInode(t)
			if openers := openersOf(held); !slices.Equal(openers, []int{h.proc.pid()}) {
				t.Fatalf("after the kill, processes %v have the held socket (inode %d) open, want fdholderd (pid %d) alone", openers, held, h.proc.pid())
			}
			conns := make([]net.Conn, queuedWhileDead)
			for i := range conns {
				c, err := net.DialTimeout("tcp", g.addr(), 5*time.Second)
				if err != nil {
					t.Fatalf("connect %d to %s while no server runs: %v, want the held socket to queue it", i, g.addr(), err)
				}
				t.Cleanup(func() { c.Close() })
				if _, err := io.WriteString(c, request); err != nil {
					t.Fatalf("send the request on connection %d: %v", i, err)
				}
				conns[i] = c
			}
			e, ok := h.entry(t, "web")
			if !ok {
				t.Fatalf(`fdclient list --json: no entry "web" after the kill`)
			}
			if e.Queued < queuedWhileDead {
				t.Fatalf(`fdclient list --json: entry "web" has %d connections queued (backlog %d), want at least %d`, e.Queued, e.Backlog, queuedWhileDead)
			}
			t.Logf("with no server process, %d connections were made and queued on the held socket (fdclient list: queued %d, backlog %d)",
				queuedWhileDead, e.Queued, e.Backlog)

			successor := g.start(t)
			g.checkServesHeldSocket(t, successor)
			answered := 0
			for i, c := range conns {
				if err := readReply(c, startTimeout); err != nil {
					t.Errorf("connection %d, made while no server ran: %v", i, err)
					continue
				}
				answered++
			}
			t.Logf("the successor %s answered %d of the %d connections queued while no server ran", successor.name, answered, queuedWhileDead)
		})
	}
}

// dial connects to addr and closes the connection at the end of the test.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitAccepted waits until one of the workers has accepted c, and returns
// its pid. A connection still in the accept queue has no file, so its line
// in /proc/net/tcp shows the inode 0; once accepted, the inode is that of
// the socket the worker has open.
func waitAccepted(t testing.TB, c net.Conn, workers []procIdentity) int {
	t.Helper()
	local := c.LocalAddr().(*net.TCPAddr).Port
	server := c.RemoteAddr().(*net.TCPAddr).Port
	acceptor := 0
	testutil.WaitFor(t, startTimeout, "a worker to accept the connection", func() bool {
		inode := serverSideInode(t, server, local)
		if inode == 0 {
			return false
		}
		for _, pid := range openersOf(inode) {
			for _, w := range workers {
				if w.pid == pid {
					acceptor = pid
					return true
				}
			}
		}
		return false
	})
	return acceptor
}

// serverSideInode returns the inode of the established socket on
// serverPort whose peer is clientPort, from /proc/net/tcp (proc(5)); 0 while
// it waits in the accept queue or when there is none.
func serverSideInode(t testing.TB, serverPort, clientPort int) uint64 {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatalf("connections: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "01" { // ESTABLISHED
			continue
		}
		_, lp, _ := strings.Cut(fs[1], ":")
		_, rp, _ := strings.Cut(fs[2], ":")
		l, err1 := strconv.ParseUint(lp, 16, 16)
		r, err2 := strconv.ParseUint(rp, 16, 16)
		if err1 != nil || err2 != nil || int(l) != serverPort || int(r) != clientPort {
			continue
		}
		inode, err := strconv.ParseUint(fs[9], 10, 64)
		if err != nil {
			t.Fatalf("connections: bad line %q", sc.Text())
		}
		return inode
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("connections: %v", err)
	}
	return 0
}

// workerGrace is how long the workers of a killed master get to exit on
// their own: a sync worker notices its parent changed when its select(2)
// times out, after half of gunicorn's --timeout. One blocked reading a
// request never notices, and is killed.
const workerGrace = 5 * time.Second

// reapWorkers waits for the workers of a killed master to be gone, and
// kills with SIGKILL, by pid, those still running after workerGrace.
func reapWorkers(t testing.TB, workers []procIdentity) {
	t.Helper()
	running := func() []procIdentity {
		var r []procIdentity
		for _, w := range workers {
			if w.alive() {
				r = append(r, w)
			}
		}
		return r
	}
	deadline := time.Now().Add(workerGrace)
	for len(running()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	left := running()
	for _, w := range left {
		w.kill(t)
	}
	testutil.WaitFor(t, exitTimeout, "the killed workers to exit", func() bool { return len(running()) == 0 })
	t.Logf("workers %v of the killed master: exited on their own: %d; still running after %v, killed with SIGKILL: %v",
		pids(workers), len(workers)-len(left), workerGrace, pids(left))
}

func pids(ps []procIdentity) []int {
	var r []int
	for _, p := range ps {
		r = append(r, p.pid)
	}
	return r
}

// listenersOn returns the inodes of the TCP sockets listening on port.
func listenersOn(t testing.TB, port int) []uint64 {
	t.Helper()
	var inodes []uint64
	for inode, p := range tcpListeners(t) {
		if p == port {
			inodes = append(inodes, inode)
		}
	}
	return inodes
}

// heldInode returns the inode of the one socket listening on the server's
// port: with the holder, the held socket.
func (g *gunicornServer) heldInode(t testing.TB) uint64 {
	t.Helper()
	inodes := listenersOn(t, g.port)
	if len(inodes) != 1 {
		t.Fatalf("%d sockets listen on port %d (inodes %v), want exactly one: the held one", len(inodes), g.port, inodes)
	}
	return inodes[0]
}
