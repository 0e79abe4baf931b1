package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/bench/internal/stat"
)

// scaleResult is the 100,000-sockets row: the holder's memory, the time of
// a full "fdclient list", and the get latency with many entries held against
// a second holder with few, measured by turns in the same rounds.
type scaleResult struct {
	Kind         string  `json:"kind"`
	Asked        int     `json:"asked"` // entries the suite wanted
	Want         int     `json:"want"`  // entries asked for here
	Held         int     `json:"held"`  // entries held at the end
	Limit        uint64  `json:"limit"` // the holder's RLIMIT_NOFILE
	RSSSmallKiB  int     `json:"rss_small_kib"`
	RSSLargeKiB  int     `json:"rss_large_kib"`
	BytesPerEnt  float64 `json:"bytes_per_entry"`
	FillSecs     float64 `json:"fill_secs"`
	ListLines    int     `json:"list_lines"`
	ListMedianNs int64   `json:"list_median_ns"`
	ListMaxNs    int64   `json:"list_max_ns"`
	// GetSmall is the large holder itself with 10 held, before the fill:
	// minutes before the rounds, so it is context, not the baseline.
	GetSmall result `json:"get_small"`
	// BaseHeld entries are held by the second holder (-base).
	BaseHeld int          `json:"base_held"`
	Rounds   []scaleRound `json:"rounds"`
	// The medians of the rounds' ratios: the row's figures.
	RatioMedian   float64 `json:"ratio_median"`
	Ratio10Median float64 `json:"ratio_same10_median"`
}

// scaleRound is one round of the interleaved get measurements: the large
// holder and the second one, a few seconds apart, on the same core.
type scaleRound struct {
	Large   result  `json:"large"`        // names at random among all held
	Large10 result  `json:"large_same10"` // the same 10 names the second holder holds
	Base    result  `json:"base"`         // the second holder, names at random among its 10
	Ratio   float64 `json:"ratio"`        // Large.P50 / Base.P50
	Ratio10 float64 `json:"ratio_same10"` // Large10.P50 / Base.P50
}

// small is the "few entries" reference point of the scale row.
const small = 10

func runScale(args []string) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	socket := fs.String("socket", "", "the holder's socket")
	pid := fs.Int("pid", 0, "the holder's pid, for its memory and descriptor limit")
	base := fs.String("base", "", "the socket of a second holder, empty, to hold 10 entries: the baseline of the get latency")
	rounds := fs.Int("rounds", 5, "interleaved rounds of get latency, large holder and second holder by turns")
	fdclient := fs.String("fdclient", "fdclient", "the fdclient binary, for the list timing")
	n := fs.Int("n", 100_000, "entries to hold")
	iters := fs.Int("i", 50_000, "gets per latency measurement")
	listRuns := fs.Int("list-runs", 5, "timed runs of fdclient list")
	asked := fs.Int("asked", 0, "the entries the suite wanted, when -n had to be lower (reported only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *base == "" || *rounds < 1 || *n <= small {
		return fmt.Errorf("need -base, -rounds >= 1 and -n > %d", small)
	}
	ctx := context.Background()
	r := scaleResult{Kind: "scale", Want: *n, Asked: max(*asked, *n), BaseHeld: small}
	var err error
	if r.Limit, err = nofileLimit(*pid); err != nil {
		return err
	}
	names := make([]string, *n)
	for i := range names {
		names[i] = fmt.Sprintf("scale-%06d", i)
	}
	if err := fill(ctx, *socket, names[:small], 1); err != nil {
		return err
	}
	if err := fill(ctx, *base, names[:small], 1); err != nil {
		return err
	}
	if r.RSSSmallKiB, err = vmRSS(*pid); err != nil {
		return err
	}
	large, err := fdholder.Dial(ctx, *socket)
	if err != nil {
		return err
	}
	defer large.Close()
	baseClient, err := fdholder.Dial(ctx, *base)
	if err != nil {
		return err
	}
	defer baseClient.Close()
	r.GetSmall = getLatency(ctx, large, names[:small], *iters)
	start := time.Now()
	if err := fill(ctx, *socket, names[small:], 4); err != nil {
		return err
	}
	r.FillSecs = time.Since(start).Seconds()
	if r.RSSLargeKiB, err = vmRSS(*pid); err != nil {
		return err
	}
	r.Held = *n
	r.BytesPerEnt = float64(r.RSSLargeKiB-r.RSSSmallKiB) * 1024 / float64(*n-small)
	var runs []int64
	for range *listRuns {
		var out bytes.Buffer
		cmd := exec.Command(*fdclient, "--socket", *socket, "list")
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("fdclient list: %w", err)
		}
		runs = append(runs, int64(time.Since(t0)))
		r.ListLines = bytes.Count(out.Bytes(), []byte("\n"))
	}
	r.ListMedianNs, _, r.ListMaxNs = percentiles(runs)
	// The load of this shared machine moves every figure by up to 60% from
	// one minute to the next: a baseline measured before the fill is not
	// comparable. Each round measures both holders within seconds, and
	// alternates which goes first so that neither always follows the other.
	var ratios, ratios10 []float64
	for i := range *rounds {
		var rd scaleRound
		measureBase := func() { rd.Base = getLatency(ctx, baseClient, names[:small], *iters) }
		if i%2 == 0 {
			measureBase()
		}
		rd.Large = getLatency(ctx, large, names, *iters)
		rd.Large10 = getLatency(ctx, large, names[:small], *iters)
		if i%2 == 1 {
			measureBase()
		}
		if rd.Base.P50 == 0 {
			return fmt.Errorf("round %d: no get from the second holder succeeded", i+1)
		}
		rd.Ratio = float64(rd.Large.P50) / float64(rd.Base.P50)
		rd.Ratio10 = float64(rd.Large10.P50) / float64(rd.Base.P50)
		fmt.Fprintf(os.Stderr, "fdbench scale: round %d: get p50 with %d held %.1f µs (same %d names %.1f µs), with %d held %.1f µs: %.3f× (same names %.3f×)\n",
			i+1, r.Held, float64(rd.Large.P50)/1e3, small, float64(rd.Large10.P50)/1e3, small, float64(rd.Base.P50)/1e3, rd.Ratio, rd.Ratio10)
		r.Rounds = append(r.Rounds, rd)
		ratios, ratios10 = append(ratios, rd.Ratio), append(ratios10, rd.Ratio10)
	}
	r.RatioMedian, r.Ratio10Median = stat.Median(ratios), stat.Median(ratios10)
	fmt.Fprintf(os.Stderr, "fdbench scale: median of %d rounds' ratios: %.3f× (same names %.3f×)\n", *rounds, r.RatioMedian, r.Ratio10Median)
	return emit(r)
}

// fill stores a fresh listening Unix socket (abstract namespace, so no file
// is left behind) under each name, with workers clients in parallel. Each
// socket is closed here once the holder holds its copy.
func fill(ctx context.Context, socket string, names []string, workers int) error {
	var next atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			c, err := fdholder.Dial(ctx, socket)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(names) {
					return
				}
				if err := storeListener(ctx, c, names[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// listeners numbers the sockets storeListener binds.
var listeners atomic.Int64

func storeListener(ctx context.Context, c *fdholder.Client, name string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), name) // blocking: not registered with the netpoller
	defer f.Close()
	// Both holders hold the first names: the address must differ.
	addr := &unix.SockaddrUnix{Name: fmt.Sprintf("@fdbench-%d-%d-%s", os.Getpid(), listeners.Add(1), name)}
	if err := unix.Bind(fd, addr); err != nil {
		return os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		return os.NewSyscallError("listen", err)
	}
	_, err = c.Store(ctx, name, f, fdholder.StoreOptions{})
	return err
}

// getLatency gets names in a random order on c's connection.
func getLatency(ctx context.Context, c *fdholder.Client, names []string, iters int) result {
	order := make([]string, 4096)
	for i := range order {
		order[i] = names[rand.IntN(len(names))]
	}
	i := 0
	get := func(ctx context.Context) error {
		f, _, err := c.Get(ctx, order[i%len(order)])
		i++
		if err != nil {
			return err
		}
		return f.Close()
	}
	return measure(fmt.Sprintf("go-conn-%d-held", len(names)), 1, iters, 0, []op{get})
}

// vmRSS returns the resident set of process pid (VmRSS, proc(5)), in KiB.
func vmRSS(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// nofileLimit returns the soft RLIMIT_NOFILE of process pid.
func nofileLimit(pid int) (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		return 0, os.NewSyscallError("prlimit", err)
	}
	return lim.Cur, nil
}
