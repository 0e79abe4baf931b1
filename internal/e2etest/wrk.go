package e2etest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// WrkResult is what the tests read from wrk's report.
type WrkResult struct {
	Requests   int64         // "N requests in D, ..."
	Duration   time.Duration // D
	LatencyMax time.Duration // the Max column of the Latency line

	// "Socket errors: connect C, read R, write W, timeout T": a connection
	// refused or reset shows here (wrk connects without blocking, so a
	// refused connect often counts as a write error). wrk prints the line
	// only when one is not zero.
	Connect, Read, Write, Timeout int64

	// "Non-2xx or 3xx responses: N", printed only when N is not zero.
	Non2xx3xx int64
}

// SocketErrors is the sum of the socket errors of every kind.
func (r WrkResult) SocketErrors() int64 { return r.Connect + r.Read + r.Write + r.Timeout }

func (r WrkResult) String() string {
	return fmt.Sprintf("%d requests in %v, max latency %v, socket errors: connect %d, read %d, write %d, timeout %d, non-2xx/3xx %d",
		r.Requests, r.Duration, r.LatencyMax, r.Connect, r.Read, r.Write, r.Timeout, r.Non2xx3xx)
}

var (
	wrkRequestsRE = regexp.MustCompile(`(?m)^[ \t]*(\d+) requests in (\S+), `)
	// The Latency line of "Thread Stats": Avg, Stdev, Max, +/- Stdev. The
	// "Latency Distribution" header has one word after "Latency" only.
	wrkLatencyRE = regexp.MustCompile(`(?m)^[ \t]*Latency[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)`)
	wrkErrorsRE  = regexp.MustCompile(`(?m)^[ \t]*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xxRE  = regexp.MustCompile(`(?m)^[ \t]*Non-2xx or 3xx responses: (\d+)`)
)

// ParseWrk parses the report wrk 4 prints at the end of a run. wrk's times
// are in us, ms, s, m or h with two decimals, all of which
// time.ParseDuration reads.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	m := wrkRequestsRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("parse wrk report: no %q line in %q", "N requests in", out)
	}
	var err error
	if r.Requests, err = strconv.ParseInt(m[1], 10, 64); err != nil {
		return r, fmt.Errorf("parse wrk report: requests: %w", err)
	}
	if r.Duration, err = time.ParseDuration(m[2]); err != nil {
		return r, fmt.Errorf("parse wrk report: duration: %w", err)
	}
	m = wrkLatencyRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("parse wrk report: no Latency line in %q", out)
	}
	if r.LatencyMax, err = time.ParseDuration(m[3]); err != nil {
		return r, fmt.Errorf("parse wrk report: max latency: %w", err)
	}
	if m = wrkErrorsRE.FindStringSubmatch(out); m != nil {
		for i, dst := range []*int64{&r.Connect, &r.Read, &r.Write, &r.Timeout} {
			if *dst, err = strconv.ParseInt(m[i+1], 10, 64); err != nil {
				return r, fmt.Errorf("parse wrk report: socket errors: %w", err)
			}
		}
	}
	if m = wrkNon2xxRE.FindStringSubmatch(out); m != nil {
		if r.Non2xx3xx, err = strconv.ParseInt(m[1], 10, 64); err != nil {
			return r, fmt.Errorf("parse wrk report: non-2xx: %w", err)
		}
	}
	return r, nil
}

// Wrk is a running wrk.
type Wrk struct {
	proc *Process
	max  time.Duration // wrk's -d: it ends on its own after this
}

// WrkMaxDuration bounds a load run whose test has no deadline (go test
// -timeout 0). The tests stop wrk with SIGINT, on which it stops and
// prints its report, as soon as their restarts are done; the bound is only
// reached if they hang.
const WrkMaxDuration = 10 * time.Minute

// wrkDuration is how long a load run started now may last: until the test
// binary's own deadline (go test -timeout), past which the test is killed
// anyway, so that the load outlasts the test however slow the machine.
// A fixed 180 s did not: six restarts of test/e2e took 69 s on a loaded
// 2-core machine, then over 220 s at a load of 50, and wrk's load had
// ended before the last gunicorn started, which then waited in vain for
// its 200 requests.
func wrkDuration(t testing.TB) time.Duration {
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := dt.Deadline(); ok {
			return max(time.Until(deadline).Truncate(time.Second), time.Second)
		}
	}
	return WrkMaxDuration
}

// wrkRuns numbers the runs, so that several in one directory each have
// their own report file.
var wrkRuns atomic.Int64

// StartWrk starts wrk -t2 -c32 against addr with a 10 s request timeout
// and the extra arguments (a header, say), its report captured to a file
// in dir.
func StartWrk(t testing.TB, dir, addr string, extra ...string) *Wrk {
	t.Helper()
	return StartWrkTimeout(t, dir, addr, 10*time.Second, extra...)
}

// StartWrkTimeout is StartWrk with wrk's request timeout: a request
// without a reply after it counts as a "timeout" socket error.
func StartWrkTimeout(t testing.TB, dir, addr string, timeout time.Duration, extra ...string) *Wrk {
	t.Helper()
	bin, err := exec.LookPath("wrk")
	testutil.NeedPeer(t, err == nil, "wrk (apt-get install wrk): %v", err)
	n := wrkRuns.Add(1)
	d := wrkDuration(t)
	args := append([]string{bin, "-t2", "-c32", fmt.Sprintf("-d%ds", int(d/time.Second)),
		"--latency", "--timeout", fmt.Sprintf("%ds", int(timeout/time.Second))}, extra...)
	p := StartProcess(t, "wrk", dir, filepath.Join(dir, fmt.Sprintf("wrk-%d.out", n)), filepath.Join(dir, fmt.Sprintf("wrk-%d.err", n)),
		append(args, "http://"+addr+"/")...)
	return &Wrk{proc: p, max: d}
}

// Pid is wrk's process id.
func (w *Wrk) Pid() int { return w.proc.Pid() }

// Stop interrupts wrk and returns its parsed report. It fails the test if
// wrk ended on its own before: the load did not last as long as the test.
func (w *Wrk) Stop(t testing.TB) WrkResult {
	t.Helper()
	if w.proc.Exited() {
		t.Fatalf("wrk ended before the test stopped it (after %v at most): %v", w.max, w.proc.Err())
	}
	w.proc.Signal(t, syscall.SIGINT)
	if err := w.proc.Wait(t, ExitTimeout); err != nil {
		t.Fatalf("wrk: %v", err)
	}
	out, err := os.ReadFile(w.proc.OutPath)
	if err != nil {
		t.Fatalf("wrk report: %v", err)
	}
	r, err := ParseWrk(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
