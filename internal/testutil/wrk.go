package testutil

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// WrkResult is what the tests read from wrk's report (wrk 4, Debian's wrk).
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
