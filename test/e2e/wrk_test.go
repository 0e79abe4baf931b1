package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// wrkResult is what the tests read from wrk's report.
type wrkResult struct {
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
func (r wrkResult) SocketErrors() int64 { return r.Connect + r.Read + r.Write + r.Timeout }

func (r wrkResult) String() string {
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

// parseWrk parses the report wrk 4 prints at the end of a run. wrk's times
// are in us, ms, s, m or h with two decimals, all of which
// time.ParseDuration reads.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
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

// The reports in testdata are real wrk 4.1.0 output, captured against
// gunicorn serving testdata/app.py: a clean run; a run during which
// gunicorn, binding its port itself, was restarted once; a run against
// python3 -m http.server for a missing file; and wrk's whole output when
// the port was closed from the start.
func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		want    wrkResult
		wantErr bool
	}{
		{
			name: "clean",
			file: "wrk-clean.txt",
			want: wrkResult{Requests: 17810, Duration: 2040 * time.Millisecond, LatencyMax: 51560 * time.Microsecond},
		},
		{
			name: "socket errors",
			file: "wrk-socket-errors.txt",
			want: wrkResult{Requests: 29315, Duration: 4520 * time.Millisecond, LatencyMax: 68830 * time.Microsecond,
				Read: 32, Write: 5798},
		},
		{
			name: "non-2xx",
			file: "wrk-non2xx.txt",
			want: wrkResult{Requests: 1678, Duration: 1100 * time.Millisecond, LatencyMax: 8430 * time.Microsecond,
				Non2xx3xx: 1678},
		},
		{
			name:    "refused at start",
			file:    "wrk-refused.txt",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseWrk(string(b))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseWrk(%s) = %v, want an error", tt.file, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseWrk(%s): %v", tt.file, err)
			}
			if got != tt.want {
				t.Errorf("parseWrk(%s) =\n  %v\nwant\n  %v", tt.file, got, tt.want)
			}
		})
	}
}

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
func (w *wrkRun) stop(t testing.TB) wrkResult {
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
	r, err := parseWrk(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
