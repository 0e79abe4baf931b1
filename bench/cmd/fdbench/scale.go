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
)

// scaleResult is the 100,000-sockets row: the holder's memory, the time of
// a full "fdclient list", and the get latency with few and many entries.
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
	GetSmall     result  `json:"get_small"`
	GetLarge     result  `json:"get_large"`
	GetLarge10   result  `json:"get_large_same10"` // the same 10 names as GetSmall, with all held
}

// small is the "few entries" reference point of the scale row.
const small = 10

func runScale(args []string) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	socket := fs.String("socket", "", "the holder's socket")
	pid := fs.Int("pid", 0, "the holder's pid, for its memory and descriptor limit")
	fdclient := fs.String("fdclient", "fdclient", "the fdclient binary, for the list timing")
	n := fs.Int("n", 100_000, "entries to hold")
	iters := fs.Int("i", 50_000, "gets per latency measurement")
	listRuns := fs.Int("list-runs", 5, "timed runs of fdclient list")
	asked := fs.Int("asked", 0, "the entries the suite wanted, when -n had to be lower (reported only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	r := scaleResult{Kind: "scale", Want: *n, Asked: max(*asked, *n)}
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
	if r.RSSSmallKiB, err = vmRSS(*pid); err != nil {
		return err
	}
	if r.GetSmall, err = getLatency(ctx, *socket, names[:small], *iters); err != nil {
		return err
	}
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
	if r.GetLarge, err = getLatency(ctx, *socket, names, *iters); err != nil {
		return err
	}
	if r.GetLarge10, err = getLatency(ctx, *socket, names[:small], *iters); err != nil {
		return err
	}
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

func storeListener(ctx context.Context, c *fdholder.Client, name string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), name) // blocking: not registered with the netpoller
	defer f.Close()
	addr := &unix.SockaddrUnix{Name: fmt.Sprintf("@fdbench-%d-%s", os.Getpid(), name)}
	if err := unix.Bind(fd, addr); err != nil {
		return os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		return os.NewSyscallError("listen", err)
	}
	_, err = c.Store(ctx, name, f, fdholder.StoreOptions{})
	return err
}

// getLatency gets names in a random order on one connection.
func getLatency(ctx context.Context, socket string, names []string, iters int) (result, error) {
	c, err := fdholder.Dial(ctx, socket)
	if err != nil {
		return result{}, err
	}
	defer c.Close()
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
	return measure(fmt.Sprintf("go-conn-%d-held", len(names)), 1, iters, 0, []op{get}), nil
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
