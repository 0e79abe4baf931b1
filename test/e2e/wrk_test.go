package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// wrkRun is a running wrk.
type wrkRun struct {
	proc *process
}

// wrkMaxDuration bounds a load run. The tests stop wrk with SIGINT, on
// which it stops and prints its report, as soon as their restarts are done;
// this bound is only reached if they hang. (Six restarts took 69 s in a
// full run on a loaded 2-core machine, so a minute was not enough.)
const wrkMaxDuration = 180 * time.Second

// startWrk starts wrk -t2 -c32 against addr with a 10 s request timeout,
// its report captured to a file in dir.
func startWrk(t testing.TB, dir, addr string) *wrkRun {
	t.Helper()
	return startWrkTimeout(t, dir, addr, 10*time.Second)
}

// startWrkTimeout is startWrk with wrk's request timeout: a request
// without a reply after it counts as a "timeout" socket error.
func startWrkTimeout(t testing.TB, dir, addr string, timeout time.Duration) *wrkRun {
	t.Helper()
	bin, err := exec.LookPath("wrk")
	testutil.NeedPeer(t, err == nil, "wrk (apt-get install wrk): %v", err)
	p := startProcess(t, "wrk", dir, filepath.Join(dir, "wrk.out"), filepath.Join(dir, "wrk.err"),
		bin, "-t2", "-c32", fmt.Sprintf("-d%ds", int(wrkMaxDuration/time.Second)),
		"--latency", "--timeout", fmt.Sprintf("%ds", int(timeout/time.Second)), "http://"+addr+"/")
	return &wrkRun{proc: p}
}

// stop interrupts wrk and returns its parsed report. It fails the test if
// wrk ended on its own before: the load did not last as long as the test.
func (w *wrkRun) stop(t testing.TB) testutil.WrkResult {
	t.Helper()
	if w.proc.exited() {
		t.Fatalf("wrk ended before the test stopped it (after %v at most): %v", wrkMaxDuration, w.proc.err)
	}
	w.proc.signal(t, syscall.SIGINT)
	if err := w.proc.wait(t, exitTimeout); err != nil {
		t.Fatalf("wrk: %v", err)
	}
	out, err := os.ReadFile(w.proc.outPath)
	if err != nil {
		t.Fatalf("wrk report: %v", err)
	}
	r, err := testutil.ParseWrk(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
