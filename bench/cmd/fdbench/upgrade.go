package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fdholder/fdholder"
)

// upgradeResult is the in-place upgrade row: gets streamed at the holder
// while it upgrades itself (SIGUSR2) several times.
type upgradeResult struct {
	Kind     string  `json:"kind"`
	Upgrades int     `json:"upgrades"`
	Gets     int     `json:"gets"`
	Failed   int     `json:"failed"`
	P50      int64   `json:"p50_ns"`
	P99      int64   `json:"p99_ns"`
	Max      int64   `json:"max_ns"`
	UpP99    int64   `json:"upgrade_p99_ns"` // gets started within window of a signal
	UpMax    int64   `json:"upgrade_max_ns"`
	UpGets   int     `json:"upgrade_gets"`
	Window   float64 `json:"window_secs"`
	PIDs     []int   `json:"pids"` // the holder's pid before each upgrade, then at the end
	Held     bool    `json:"held"` // the entry was still held at the end
	Errors   []string
}

func runUpgrade(args []string) error {
	fs := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	socket := fs.String("socket", "", "the holder's socket")
	pid := fs.Int("pid", 0, "the holder's pid when started")
	name := fs.String("name", "bench", "the held entry to get")
	conc := fs.Int("c", 4, "concurrent getters, each with its own client")
	upgrades := fs.Int("upgrades", 2, "upgrades (SIGUSR2) to trigger")
	gap := fs.Duration("gap", 2*time.Second, "time between two upgrades, and before the first")
	window := fs.Duration("window", time.Second, "how long after a signal a get counts as during the upgrade")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	type sample struct {
		at, d time.Duration
		err   error
	}
	start := time.Now()
	var stop atomic.Bool
	per := make([][]sample, *conc)
	var wg sync.WaitGroup
	for i := range per {
		c, err := fdholder.Dial(ctx, *socket)
		if err != nil {
			return err
		}
		defer c.Close()
		wg.Go(func() {
			for !stop.Load() {
				t0 := time.Now()
				f, _, err := c.Get(ctx, *name)
				if err == nil {
					f.Close()
				}
				per[i] = append(per[i], sample{at: t0.Sub(start), d: time.Since(t0), err: err})
			}
		})
	}
	r := upgradeResult{Kind: "upgrade", Upgrades: *upgrades, Window: window.Seconds()}
	var signalled []time.Duration
	current := *pid
	for range *upgrades {
		time.Sleep(*gap)
		if p := holderPID(*socket, current); p > 0 {
			current = p
		}
		r.PIDs = append(r.PIDs, current)
		signalled = append(signalled, time.Since(start))
		if err := syscall.Kill(current, syscall.SIGUSR2); err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("kill -USR2 %d: %v", current, err))
		}
	}
	time.Sleep(*gap)
	stop.Store(true)
	wg.Wait()
	r.PIDs = append(r.PIDs, holderPID(*socket, current))

	var all, during []int64
	for _, s := range per {
		for _, x := range s {
			r.Gets++
			if x.err != nil {
				r.Failed++
				if len(r.Errors) < 5 {
					r.Errors = append(r.Errors, x.err.Error())
				}
				continue
			}
			all = append(all, int64(x.d))
			for _, sig := range signalled {
				if x.at >= sig && x.at < sig+*window {
					during = append(during, int64(x.d))
					break
				}
			}
		}
	}
	r.P50, r.P99, r.Max = percentiles(all)
	_, r.UpP99, r.UpMax = percentiles(during)
	r.UpGets = len(during)
	if c, err := fdholder.Dial(ctx, *socket); err == nil {
		if f, _, err := c.Get(ctx, *name); err == nil {
			f.Close()
			r.Held = true
		}
		c.Close()
	}
	return emit(r)
}

// holderPID returns the pid of the newest process that has the listening
// socket at path open (found through /proc/net/unix and /proc/*/fd, as
// ss -xlp does), or fallback if none is found. During an upgrade the old
// and the new holder may both have it; the newest is the one to signal.
func holderPID(path string, fallback int) int {
	inode := listenerInode(path)
	if inode == "" {
		return fallback
	}
	target := "socket:[" + inode + "]"
	best, bestStart := fallback, int64(-1)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(p + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(p + "/fd/" + fd.Name()); err == nil && l == target {
				if st := startTime(pid); st > bestStart {
					best, bestStart = pid, st
				}
				break
			}
		}
	}
	return best
}

// listenerInode finds the inode of the listening Unix socket bound to path
// in /proc/net/unix (proc(5)).
func listenerInode(path string) string {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) == 8 && fields[7] == path {
			if flags, err := strconv.ParseUint(fields[3], 16, 32); err == nil && flags&0x10000 != 0 { // __SO_ACCEPTCON
				return fields[6]
			}
		}
	}
	return ""
}

// startTime returns a process's start time in clock ticks (proc(5) stat
// field 22), or -1.
func startTime(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return -1
	}
	v, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return -1
	}
	return v
}
