package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fdbench get|scale|upgrade [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "get":
		err = runGet(os.Args[2:])
	case "scale":
		err = runScale(os.Args[2:])
	case "upgrade":
		err = runUpgrade(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "fdbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// result is the line printed per measurement; the C baselines print the
// same fields (bench/c/stats.h).
type result struct {
	Client  string  `json:"client"`
	Conc    int     `json:"conc"`
	Ops     int     `json:"ops"`
	Errors  int     `json:"errors"`
	Secs    float64 `json:"secs"`
	OpsPerS float64 `json:"ops_per_s"`
	P50     int64   `json:"p50_ns"`
	P99     int64   `json:"p99_ns"`
	Max     int64   `json:"max_ns"`
}

// maxSamples bounds one worker's kept latencies, as in stats.h.
const maxSamples = 2_000_000

// op is one measured operation of one worker.
type op func(ctx context.Context) error

// measure runs conc workers, each with its own op, for iters operations
// each (iters > 0) or for dur, and summarises their latencies.
func measure(name string, conc, iters int, dur time.Duration, ops []op) result {
	type worker struct {
		samples    []int64
		n, errs    int
		start, end time.Time
	}
	ws := make([]worker, conc)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range ws {
		wg.Go(func() {
			w := &ws[i]
			w.samples = make([]int64, 0, min(maxSamples, max(iters, 1<<16)))
			w.start = time.Now()
			stop := w.start.Add(dur)
			for {
				t0 := time.Now()
				if iters > 0 && w.n >= iters || iters <= 0 && !t0.Before(stop) {
					break
				}
				if err := ops[i](ctx); err != nil {
					w.errs++
					fmt.Fprintf(os.Stderr, "fdbench: %v\n", err)
					if w.errs >= 10 {
						break
					}
					continue
				}
				d := time.Since(t0)
				if len(w.samples) < maxSamples {
					w.samples = append(w.samples, int64(d))
				}
				w.n++
			}
			w.end = time.Now()
		})
	}
	wg.Wait()
	r := result{Client: name, Conc: conc}
	var all []int64
	start, end := ws[0].start, ws[0].end
	for _, w := range ws {
		r.Ops += w.n
		r.Errors += w.errs
		all = append(all, w.samples...)
		if w.start.Before(start) {
			start = w.start
		}
		if w.end.After(end) {
			end = w.end
		}
	}
	r.Secs = end.Sub(start).Seconds()
	r.OpsPerS = float64(r.Ops) / r.Secs
	r.P50, r.P99, r.Max = percentiles(all)
	return r
}

// percentiles sorts s and returns its median, 99th percentile and maximum.
func percentiles(s []int64) (p50, p99, mx int64) {
	if len(s) == 0 {
		return 0, 0, 0
	}
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100], s[len(s)-1]
}

func emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

// getClose returns one get of name and the close of what it returned:
// through Client.GetFD with fd, else Client.Get.
func getClose(fd bool, name string) func(context.Context, *fdholder.Client) error {
	if fd {
		return func(ctx context.Context, c *fdholder.Client) error {
			d, _, err := c.GetFD(ctx, name)
			if err != nil {
				return err
			}
			return d.Close()
		}
	}
	return func(ctx context.Context, c *fdholder.Client) error {
		f, _, err := c.Get(ctx, name)
		if err != nil {
			return err
		}
		return f.Close()
	}
}

func runGet(args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	socket := fs.String("socket", "", "the holder's socket")
	name := fs.String("name", "bench", "the held entry to get")
	mode := fs.String("mode", "conn", "conn: one connection per worker; fd: Client.GetFD on one connection per worker; newconn: a connection per get; newconnfd: newconn with Client.GetFD; listen: Client.Listen on one connection per worker; raw, rawfile: blocking system calls without the client package")
	conc := fs.Int("c", 1, "concurrent workers, each with its own client")
	iters := fs.Int("i", 0, "gets per worker (0: run for -d)")
	dur := fs.Duration("d", time.Second, "how long to run when -i is 0")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	ops := make([]op, *conc)
	for i := range ops {
		switch *mode {
		case "conn", "fd":
			// fd: Client.GetFD, the get without the *os.File, as a
			// program that only passes the descriptor on makes it.
			c, err := fdholder.Dial(ctx, *socket)
			if err != nil {
				return err
			}
			defer c.Close()
			get := getClose(*mode == "fd", *name)
			ops[i] = func(ctx context.Context) error { return get(ctx, c) }
		case "newconn", "newconnfd":
			get := getClose(*mode == "newconnfd", *name)
			ops[i] = func(ctx context.Context) error {
				c, err := fdholder.Dial(ctx, *socket)
				if err != nil {
					return err
				}
				defer c.Close()
				return get(ctx, c)
			}
		case "listen":
			// What a Go service does at start: Listen gets the held socket
			// and makes a net.Listener of it.
			c, err := fdholder.Dial(ctx, *socket)
			if err != nil {
				return err
			}
			defer c.Close()
			ops[i] = func(ctx context.Context) error {
				ln, err := c.Listen(ctx, *name, "tcp", "127.0.0.1:0")
				if err != nil {
					return err
				}
				return ln.Close()
			}
		case "raw", "rawfile":
			// The decomposition of the Go client's cost: the same get with
			// blocking system calls straight from Go (raw), then with the
			// descriptor wrapped in an *os.File as Client.Get returns it
			// (rawfile).
			r, err := dialBlocking(*socket, *name)
			if err != nil {
				return err
			}
			defer unix.Close(r.fd)
			wrap := *mode == "rawfile"
			ops[i] = func(context.Context) error { return r.get(wrap) }
		default:
			return fmt.Errorf("unknown mode %q", *mode)
		}
	}
	return emit(measure("go-"+*mode, *conc, *iters, *dur, ops))
}
