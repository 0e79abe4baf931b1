package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/e2etest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// The parameters of the restart runs, the same with and without the holder
// so that their figures compare.
const (
	restarts = 6
	// loadPerGeneration is how many requests each gunicorn generation must
	// have served (counted in its access log) before the next restart, so
	// that every generation, the first and the last included, served under
	// load.
	loadPerGeneration = 200
)

// TestRestartUnderLoad restarts gunicorn again and again under wrk's load,
// with the listener held by fdholderd and passed by "fdclient exec", and,
// as the baseline users see today, with gunicorn binding the port itself.
// With the holder no request may fail: while no gunicorn runs the kernel
// queues the connections on the held socket, and the next gunicorn accepts
// them. Without it, the port is closed between two gunicorns: connections
// are refused, and those queued on the closed socket are reset.
func TestRestartUnderLoad(t *testing.T) {
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
			res, served := restartUnderLoad(t, tt.holder)
			total := 0
			for _, n := range served {
				total += n
			}
			t.Logf("%d restarts under wrk -t2 -c32: %v", restarts, res)
			t.Logf("requests served by each of the %d gunicorn generations (access logs, %d in all): %v", len(served), total, served)
			if tt.holder {
				if res.SocketErrors() != 0 || res.Non2xx3xx != 0 {
					t.Errorf("with the holder: %d socket errors (connect %d, read %d, write %d, timeout %d) and %d non-2xx/3xx replies, want none",
						res.SocketErrors(), res.Connect, res.Read, res.Write, res.Timeout, res.Non2xx3xx)
				}
				if res.Requests == 0 {
					t.Errorf("with the holder: wrk completed no request")
				}
				return
			}
			if res.SocketErrors() == 0 {
				t.Errorf("without the holder: no socket error in %d restarts, want some: the baseline shows none of the failures the holder prevents", restarts)
			}
		})
	}
}

// restartUnderLoad runs the restart scenario: gunicorn #0 starts (through
// "fdclient exec" when holder is set), wrk starts, and gunicorn is stopped
// with SIGTERM and started again restarts times, each generation serving
// loadPerGeneration requests before the next restart. It returns wrk's
// report and the number of requests each generation served.
func restartUnderLoad(t *testing.T, holder bool) (e2etest.WrkResult, []int) {
	t.Helper()
	dir := t.TempDir()
	var h *e2etest.Holder
	if holder {
		h = e2etest.StartHolder(t, dir)
	}
	g := newGunicornServer(t, dir, h)
	p := g.start(t)
	if holder {
		g.checkServesHeldSocket(t, p)
	}
	w := e2etest.StartWrkTimeout(t, dir, g.addr(), wrkGapTimeout)
	waitLoad(t, g, 0)
	for gen := 1; gen <= restarts; gen++ {
		p.Signal(t, syscall.SIGTERM)
		if err := p.Wait(t, e2etest.ExitTimeout); err != nil {
			t.Fatalf("%s after SIGTERM: %v, want exit status 0", p.Name, err)
		}
		p = g.start(t)
		if holder {
			g.checkServesHeldSocket(t, p)
		}
		waitLoad(t, g, gen)
	}
	res := w.Stop(t)
	p.Signal(t, syscall.SIGTERM)
	if err := p.Wait(t, e2etest.ExitTimeout); err != nil {
		t.Fatalf("%s after SIGTERM: %v, want exit status 0", p.Name, err)
	}
	served := make([]int, g.started)
	for gen := range served {
		served[gen] = g.requestsServed(t, gen)
	}
	return res, served
}

// waitLoad waits until generation gen has served loadPerGeneration
// requests.
func waitLoad(t testing.TB, g *gunicornServer, gen int) {
	t.Helper()
	e2etest.WaitFor(t, 20*time.Second, "gunicorn #"+itoa(gen)+" to serve "+itoa(loadPerGeneration)+" requests under load", func() bool {
		return g.requestsServed(t, gen) >= loadPerGeneration
	})
}
