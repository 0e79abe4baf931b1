package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/bench/internal/stat"
)

// metrics is a measurement line of fdbench or of the C clients.
type metrics struct {
	Client  string  `json:"client"`
	Conc    int     `json:"conc"`
	Ops     int     `json:"ops"`
	Errors  int     `json:"errors"`
	Secs    float64 `json:"secs"`
	OpsPerS float64 `json:"ops_per_s"`
	P50     float64 `json:"p50_ns"`
	P99     float64 `json:"p99_ns"`
	Max     float64 `json:"max_ns"`
}

type record struct {
	Kind string          `json:"kind"`
	Sys  string          `json:"sys"`
	Mode string          `json:"mode"`
	Pin  string          `json:"pin"`
	Cmd  string          `json:"cmd"`
	Res  json.RawMessage `json:"res"`

	// restart records are flat
	Holder       bool      `json:"holder"`
	Restarts     int       `json:"restarts"`
	RestartTimes []float64 `json:"restart_times"`
	Wrk          wrkResult `json:"wrk"`

	// gobench records
	Output string `json:"output"`
}

type wrkResult struct {
	Requests    int     `json:"requests"`
	DurationUS  float64 `json:"duration_us"`
	Connect     int     `json:"connect"`
	Read        int     `json:"read"`
	Write       int     `json:"write"`
	Timeout     int     `json:"timeout"`
	Status      int     `json:"status"`
	P50US       float64 `json:"lat_p50_us"`
	P99US       float64 `json:"lat_p99_us"`
	MaxUS       float64 `json:"lat_max_us"`
	SeriesStart float64 `json:"series_start"`
	OKPerS      []int   `json:"ok_per_s"`
	BadPerS     []int   `json:"bad_per_s"`
}

func (w wrkResult) socketErrors() int { return w.Connect + w.Read + w.Write + w.Timeout }

type scaleResult struct {
	Asked        int     `json:"asked"`
	Want         int     `json:"want"`
	Held         int     `json:"held"`
	Limit        uint64  `json:"limit"`
	RSSSmallKiB  int     `json:"rss_small_kib"`
	RSSLargeKiB  int     `json:"rss_large_kib"`
	BytesPerEnt  float64 `json:"bytes_per_entry"`
	FillSecs     float64 `json:"fill_secs"`
	ListLines    int     `json:"list_lines"`
	ListMedianNs float64 `json:"list_median_ns"`
	ListMaxNs    float64 `json:"list_max_ns"`
	GetSmall     metrics `json:"get_small"`
	// Results before the interleaved rounds: the large holder after the
	// fill, against GetSmall, the same holder before it.
	GetLarge   metrics `json:"get_large"`
	GetLarge10 metrics `json:"get_large_same10"`
	// The interleaved rounds against a second holder with BaseHeld.
	BaseHeld      int          `json:"base_held"`
	Rounds        []scaleRound `json:"rounds"`
	RatioMedian   float64      `json:"ratio_median"`
	Ratio10Median float64      `json:"ratio_same10_median"`
}

type scaleRound struct {
	Large   metrics `json:"large"`
	Large10 metrics `json:"large_same10"`
	Base    metrics `json:"base"`
	Ratio   float64 `json:"ratio"`
	Ratio10 float64 `json:"ratio_same10"`
}

// medianP50 is the median of the p50s f picks from each round.
func (sc *scaleResult) medianP50(f func(scaleRound) metrics) float64 {
	var v []float64
	for _, r := range sc.Rounds {
		v = append(v, f(r).P50)
	}
	return stat.Median(v)
}

type upgradeResult struct {
	Available *bool    `json:"available"`
	Upgrades  int      `json:"upgrades"`
	Gets      int      `json:"gets"`
	Failed    int      `json:"failed"`
	P50       float64  `json:"p50_ns"`
	P99       float64  `json:"p99_ns"`
	Max       float64  `json:"max_ns"`
	UpP99     float64  `json:"upgrade_p99_ns"`
	UpMax     float64  `json:"upgrade_max_ns"`
	UpGets    int      `json:"upgrade_gets"`
	Window    float64  `json:"window_secs"`
	PIDs      []int    `json:"pids"`
	Held      bool     `json:"held"`
	Errors    []string `json:"Errors"`
}

// hyperfine's --export-json
type hyperfineResult struct {
	Results []struct {
		Command string    `json:"command"`
		Mean    float64   `json:"mean"`
		Stddev  float64   `json:"stddev"`
		Median  float64   `json:"median"`
		Min     float64   `json:"min"`
		Max     float64   `json:"max"`
		Times   []float64 `json:"times"`
	} `json:"results"`
}

// small is the "few entries" reference of the scale row, as in fdbench.
const small = 10

type suite struct {
	lat      map[string]metrics // sys/mode/pin
	tput     map[string]metrics // sys/conc
	concs    []int
	proc     map[string]hyperfineResult // pin
	procCmd  map[string]string
	scale    *scaleResult
	scaleCmd string
	upgrade  *upgradeResult
	restart  map[bool]record
	gobench  string
	cmds     []string
	start    string // when the run started, UTC
	load     string // the load average then
}

func main() {
	results := flag.String("results", "docs/bench/results.jsonl", "the results of bench/run")
	out := flag.String("out", "docs", "where benchmarks.md and bench/*.svg go")
	quick := flag.Bool("quick", false, "the run was a quick one (BENCH_QUICK=1): say so")
	gobench := flag.String("gobench", "", "the output of the Go benchmarks, to include")
	flag.Parse()
	s, err := load(*results)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchreport: %v\n", err)
		os.Exit(1)
	}
	if *gobench != "" {
		b, err := os.ReadFile(*gobench)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchreport: %v\n", err)
			os.Exit(1)
		}
		s.gobench = string(b)
	}
	if err := os.MkdirAll(filepath.Join(*out, "bench"), 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "benchreport: %v\n", err)
		os.Exit(1)
	}
	files := map[string][]byte{
		"bench/latency.svg":  latencyChart(s),
		"bench/restarts.svg": restartChart(s),
		"benchmarks.md":      report(s, *quick),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(*out, name), b, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "benchreport: %v\n", err)
			os.Exit(1)
		}
	}
}

func load(path string) (*suite, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := &suite{lat: map[string]metrics{}, tput: map[string]metrics{}, proc: map[string]hyperfineResult{},
		procCmd: map[string]string{}, restart: map[bool]record{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if r.Cmd != "" && !slices.Contains(s.cmds, r.Cmd) {
			s.cmds = append(s.cmds, r.Cmd)
		}
		switch r.Kind {
		case "lat", "tput":
			var m metrics
			if err := json.Unmarshal(r.Res, &m); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
			if r.Kind == "lat" {
				s.lat[r.Sys+"/"+r.Mode+"/"+r.Pin] = m
			} else {
				s.tput[fmt.Sprintf("%s/%d", r.Sys, m.Conc)] = m
				if !slices.Contains(s.concs, m.Conc) {
					s.concs = append(s.concs, m.Conc)
				}
			}
		case "proc":
			var h hyperfineResult
			if err := json.Unmarshal(r.Res, &h); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
			s.proc[r.Pin] = h
			s.procCmd[r.Pin] = r.Cmd
		case "scale":
			s.scale = new(scaleResult)
			s.scaleCmd = r.Cmd
			if err := json.Unmarshal(r.Res, s.scale); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
		case "upgrade":
			s.upgrade = new(upgradeResult)
			if err := json.Unmarshal(r.Res, s.upgrade); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
		case "restart":
			s.restart[r.Holder] = r
		case "gobench":
			s.gobench = r.Output
		case "run":
			var run struct{ Start, Load string }
			if err := json.Unmarshal(r.Res, &run); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
			s.start, s.load = run.Start, run.Load
		}
	}
	slices.Sort(s.concs)
	return s, sc.Err()
}

// us formats nanoseconds as microseconds.
func us(ns float64) string {
	switch {
	case ns == 0:
		return "–"
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 100e3:
		return fmt.Sprintf("%.0f µs", ns/1e3)
	}
	return fmt.Sprintf("%.1f µs", ns/1e3)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func met(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func machine(load string) []string {
	var lines []string
	cpu, n, mhz := "", 0, ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "model name":
				cpu = v
				n++
			case "cpu MHz":
				mhz = v
			}
		}
	}
	lines = append(lines, fmt.Sprintf("CPU: %s, %d logical CPUs (from /proc/cpuinfo), %s MHz", cpu, n, mhz))
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		lines = append(lines, fmt.Sprintf("Kernel: %s %s %s (uname)", unix.ByteSliceToString(u.Sysname[:]),
			unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:])))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		first, _, _ := strings.Cut(string(b), "\n")
		lines = append(lines, "Memory: "+strings.Join(strings.Fields(first)[1:], " "))
	}
	if load != "" {
		lines = append(lines, "Load average when the run started (1, 5, 15 min): "+load+
			" — the machine is shared; other work running during the suite shows up as noise")
	}
	lines = append(lines, "Go: "+runtime.Version()+" (the binaries are built by bench/run with this toolchain)")
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Package} ${Version}, ", "s6", "libs6-dev", "skalibs-dev", "hyperfine", "wrk", "python3-gunicorn", "gcc").Output(); err == nil {
		lines = append(lines, "Peers (Debian): "+strings.TrimSuffix(string(out), ", "))
	}
	return lines
}

func report(s *suite, quick bool) []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Benchmarks\n\n")
	p("<!-- Written by bench/cmd/benchreport from docs/bench/results.jsonl; rerun bench/run rather than edit the figures. -->\n\n")
	if quick {
		p("> **A quick run (BENCH_QUICK=1)**: short runs that check the suite works. Its figures are not for comparison.\n\n")
	}
	when := "(start not recorded)"
	if s.start != "" {
		when = "started " + s.start
	}
	p("Every figure below comes from one run of `bench/run`, %s, and every ratio compares two figures of that same run. ", when)
	p("The raw results are in [bench/results.jsonl](bench/results.jsonl).\n\n")
	p("## Rerun it\n\n```sh\napt-get install s6 libs6-dev skalibs-dev hyperfine wrk python3-gunicorn gcc make\nbench/run            # builds everything, runs the suite (~6 min), rewrites this page and its charts\nBENCH_QUICK=1 bench/run   # every row, short runs: a check that the suite works\nBENCH_ONLY=scale bench/run     # only the many-held row, printed, nothing written (~20 s)\nBENCH_ONLY=metrics bench/run   # only the get with metrics on beside off, printed, nothing written\n```\n\n")
	p("Go micro-benchmarks (encode/decode, the holder's get path in-process): `go test -run '^$' -bench . -benchmem ./internal/proto ./internal/holder`.\n\n")
	p("## The machine\n\n")
	for _, l := range machine(s.load) {
		p("- %s\n", l)
	}
	p("\n")

	p("## The goals, side by side with their baselines\n\n")
	p("*Pinned*: the server and the client both on core 0 (`taskset -c 0`). *c-raw* is the physical limit: a C server and client doing nothing but the SCM_RIGHTS request/reply over SOCK_SEQPACKET (`bench/c/rawbench.c`). *s6* is s6-fdholderd driven through libs6 (`bench/c/s6bench.c`). *go* is the Go client (the root package) against fdholderd with its default settings (audit log at info); each row says which settings the holder had, and a *-quiet* row is the same against fdholderd with `--log-level warn` (no audit line per request).\n\n")
	p("| What | Goal | fdholder | Baselines, same run | Ratio | |\n|---|---|---|---|---|---|\n")
	const dflt, quiet = "fdholderd at default settings", "fdholderd with --log-level warn"
	lat := func(sys, mode string) metrics { return s.lat[sys+"/"+mode+"/pinned"] }
	{
		g, gq, cf, c, s6 := lat("go", "conn"), lat("go-quiet", "conn"), lat("c-fdh", "conn"), lat("c-raw", "conn"), lat("s6", "conn")
		p("| get round trip on one connection, Go client, p50, pinned, %s | ≤ 1.0× s6 and ≤ 1.5× raw C | %s (%s: %s) | raw C %s; s6 %s (%s of raw C) | %s of s6, %s of raw C | %s |\n",
			dflt, us(g.P50), quiet, us(gq.P50), us(c.P50), us(s6.P50), ratio(s6.P50, c.P50), ratio(g.P50, s6.P50), ratio(g.P50, c.P50),
			met(g.P50 > 0 && g.P50 <= s6.P50 && g.P50 <= 1.5*c.P50))
		p("| get round trip on one connection, C client, p50, pinned, %s | ≤ 1.25× raw C | %s | raw C %s | %s | %s |\n",
			dflt, us(cf.P50), us(c.P50), ratio(cf.P50, c.P50), met(cf.P50 > 0 && cf.P50 <= 1.25*c.P50))
		g, c, s6 = lat("go", "newconn"), lat("c-raw", "newconn"), lat("s6", "newconn")
		p("| get with a new connection each time, Go client, p50, pinned, %s | ≤ 1.0× s6 | %s | s6 %s; raw C %s | %s of s6 | %s |\n",
			dflt, us(g.P50), us(s6.P50), us(c.P50), ratio(g.P50, s6.P50), met(g.P50 > 0 && g.P50 <= s6.P50))
		if f, fn := lat("go-fd", "conn"), lat("go-fd", "newconn"); f.P50 > 0 {
			c, s6 = lat("c-raw", "conn"), lat("s6", "conn")
			p("| get round trip on one connection, Go client's `GetFD` (no `*os.File`), p50, pinned, %s | ≤ 1.0× s6 and ≤ 1.5× raw C | %s (`Get`: %s) | raw C %s; s6 %s | %s of s6, %s of raw C | %s |\n",
				dflt, us(f.P50), us(lat("go", "conn").P50), us(c.P50), us(s6.P50), ratio(f.P50, s6.P50), ratio(f.P50, c.P50),
				met(f.P50 <= s6.P50 && f.P50 <= 1.5*c.P50))
			s6 = lat("s6", "newconn")
			p("| get with a new connection each time, Go client's `GetFD`, p50, pinned, %s | ≤ 1.0× s6 | %s | s6 %s | %s of s6 | %s |\n",
				dflt, us(fn.P50), us(s6.P50), ratio(fn.P50, s6.P50), met(fn.P50 > 0 && fn.P50 <= s6.P50))
		}
		l := lat("go-listen", "conn")
		p("| `Client.Listen` (a get and `net.FileListener`) on one connection, p50, pinned, %s | report | %s | get alone %s | %s of the get | |\n",
			dflt, us(l.P50), us(lat("go", "conn").P50), ratio(l.P50, lat("go", "conn").P50))
	}
	for _, c := range []int{1, 8, 64} {
		g, s6, raw := s.tput[fmt.Sprintf("go/%d", c)], s.tput[fmt.Sprintf("s6/%d", c)], s.tput[fmt.Sprintf("c-raw/%d", c)]
		cf := s.tput[fmt.Sprintf("c-fdh/%d", c)]
		goal := "report"
		ok := ""
		if c > 1 {
			goal = "C client ≥ 1.2× s6; Go client ≥ 1.0× s6"
			ok = fmt.Sprintf("C client: %s; Go client: %s", met(cf.OpsPerS >= 1.2*s6.OpsPerS), met(g.OpsPerS >= s6.OpsPerS))
		}
		p("| gets per second, %d concurrent client(s), both cores, %s | %s | C client %.0f/s; Go client %.0f/s | s6 (C client, libs6) %.0f/s; raw C %.0f/s | C client %s, Go client %s of s6 | %s |\n",
			c, dflt, goal, cf.OpsPerS, g.OpsPerS, s6.OpsPerS, raw.OpsPerS, ratio(cf.OpsPerS, s6.OpsPerS), ratio(g.OpsPerS, s6.OpsPerS), ok)
		if f := s.tput[fmt.Sprintf("go-fd/%d", c)]; f.OpsPerS > 0 {
			fdOK := ""
			if c > 1 {
				fdOK = met(f.OpsPerS >= s6.OpsPerS)
			}
			p("| gets per second, %d concurrent client(s), Go client's `GetFD`, both cores, %s | %s | %.0f/s | s6 %.0f/s | %s of s6 | %s |\n",
				c, dflt, goal, f.OpsPerS, s6.OpsPerS, ratio(f.OpsPerS, s6.OpsPerS), fdOK)
		}
	}
	{
		// The audit line's cost: the same client against the holder at its
		// default level (a line per request) and with --log-level warn.
		g, gq := lat("go", "conn"), lat("go-quiet", "conn")
		p("| the audit line of each request: get p50, Go client, pinned, %s against %s | ≤ 1.10× | %s | %s | %s | %s |\n",
			dflt, quiet, us(g.P50), us(gq.P50), ratio(g.P50, gq.P50), met(g.P50 > 0 && gq.P50 > 0 && g.P50 <= 1.1*gq.P50))
		for _, c := range []int{8, 64} {
			cf, cq := s.tput[fmt.Sprintf("c-fdh/%d", c)], s.tput[fmt.Sprintf("c-fdh-quiet/%d", c)]
			p("| the audit line of each request: gets per second, %d C clients, both cores, %s against %s | ≥ 0.90× | %.0f/s | %.0f/s | %s | %s |\n",
				c, dflt, quiet, cf.OpsPerS, cq.OpsPerS, ratio(cf.OpsPerS, cq.OpsPerS), met(cf.OpsPerS > 0 && cf.OpsPerS >= 0.9*cq.OpsPerS))
		}
	}
	if sc := s.scale; sc != nil {
		held := fmt.Sprintf("%d held sockets", sc.Held)
		if sc.Held < sc.Asked {
			held = fmt.Sprintf("%d held sockets (**not %d**: see below)", sc.Held, sc.Asked)
		}
		rssMiB := float64(sc.RSSLargeKiB) / 1024
		scale := float64(sc.Asked) / float64(sc.Held)
		rssAsked := float64(sc.RSSSmallKiB)/1024 + sc.BytesPerEnt*float64(sc.Asked-small)/(1<<20)
		// verdict judges a goal at the count held, and says so when that is
		// not the count asked for, with the linear extrapolation.
		verdict := func(ok bool, extrapolated string, extraOK bool) string {
			if sc.Held == sc.Asked {
				return met(ok)
			}
			v := fmt.Sprintf("%s at %d", met(ok), sc.Held)
			if extrapolated != "" {
				v += fmt.Sprintf("; extrapolated to %d: %s, %s", sc.Asked, extrapolated, met(extraOK))
			}
			return v
		}
		p("| %s: holder RSS | ≤ 64 MiB | %.1f MiB, %.0f bytes per entry | %.1f MiB with %d held | | %s |\n", held, rssMiB, sc.BytesPerEnt, float64(sc.RSSSmallKiB)/1024, small,
			verdict(rssMiB <= 64, fmt.Sprintf("%.0f MiB", rssAsked), rssAsked <= 64))
		p("| %s: `fdclient list` of all | ≤ 1 s | %s (median of 5), %d lines | | | %s |\n", held, us(sc.ListMedianNs), sc.ListLines,
			verdict(sc.ListMedianNs <= 1e9, us(sc.ListMedianNs*scale), sc.ListMedianNs*scale <= 1e9))
		if len(sc.Rounds) > 0 {
			large := sc.medianP50(func(r scaleRound) metrics { return r.Large })
			base := sc.medianP50(func(r scaleRound) metrics { return r.Base })
			p("| %s: get p50, names at random, pinned | within 10%% of 10 held | %s (median of %d rounds) | %s with %d held on a second holder, measured by turns with it in each round | %.2f× (median of the rounds' ratios; the same %d names: %.2f×) | %s |\n",
				held, us(large), len(sc.Rounds), us(base), sc.BaseHeld, sc.RatioMedian, small, sc.Ratio10Median, verdict(sc.RatioMedian <= 1.1, "", false))
		} else {
			p("| %s: get p50, pinned | within 10%% of 10 held | %s | %s with %d held | %s | %s |\n", held, us(sc.GetLarge.P50), us(sc.GetSmall.P50), small, ratio(sc.GetLarge.P50, sc.GetSmall.P50),
				verdict(sc.GetLarge.P50 <= 1.1*sc.GetSmall.P50, "", false))
		}
	}
	for _, pin := range []string{"pinned", "unpinned"} {
		h, ok := s.proc[pin]
		if !ok {
			continue
		}
		m := map[string]float64{}
		for _, r := range h.Results {
			m[r.Command] = r.Median
		}
		// go-exec, the floor of any Go exec wrapper, is missing from
		// results recorded before it was added.
		goExec := ""
		if v, ok := m["go-exec"]; ok {
			goExec = fmt.Sprintf(", an empty Go program that execs /bin/true %s", us(v*1e9))
		}
		p("| `fdclient exec NAME -- /bin/true`, whole process, median, %s | ≤ 1.3× s6-fdholder-retrieve | %s | `s6-fdholder-retrieve PATH NAME /bin/true` %s; `/bin/true` %s; start-up floors: `fdclient --help` %s, an empty Go program %s%s | %s | %s |\n",
			pin, us(m["fdclient-exec"]*1e9), us(m["s6-retrieve"]*1e9), us(m["true"]*1e9), us(m["fdclient-help"]*1e9), us(m["go-start"]*1e9), goExec,
			ratio(m["fdclient-exec"], m["s6-retrieve"]), met(m["fdclient-exec"] <= 1.3*m["s6-retrieve"]))
	}
	if h, ok := s.restart[true]; ok {
		n := s.restart[false]
		p("| gunicorn via `fdclient exec` restarted %d times under `wrk -t2 -c32` | 0 socket errors, 0 non-2xx | %d socket errors, %d non-2xx; worst latency %s | without a holder: %d socket errors (connect %d, read %d, write %d, timeout %d), %d non-2xx; worst latency %s | | %s |\n",
			h.Restarts, h.Wrk.socketErrors(), h.Wrk.Status, us(h.Wrk.MaxUS*1e3), n.Wrk.socketErrors(), n.Wrk.Connect, n.Wrk.Read, n.Wrk.Write, n.Wrk.Timeout, n.Wrk.Status, us(n.Wrk.MaxUS*1e3),
			met(h.Wrk.socketErrors() == 0 && h.Wrk.Status == 0 && h.Wrk.Requests > 0))
	}
	if u := s.upgrade; u != nil {
		if u.Available != nil && !*u.Available {
			p("| two in-place upgrades of the holder under a stream of gets | 0 failed gets; report p99 | not available in this build (`fdholderd --help` does not mention SIGUSR2) | | | – |\n")
		} else {
			p("| two in-place upgrades of the holder under a stream of gets | 0 failed gets; report p99 | %d failed of %d; p99 %s within %.1f s of each signal (max %s) | p99 %s over the whole stream | | %s |\n",
				u.Failed, u.Gets, us(u.UpP99), u.Window, us(u.UpMax), us(u.P99), met(u.Failed == 0 && u.Gets > 0 && u.Held))
		}
	}
	p("\n")

	p("## Latency of one get\n\nMedians and 99th percentiles of each round trip, measured by the client around each call (CLOCK_MONOTONIC). *c-fdh* is the C client of the raw baseline speaking the fdholder protocol to fdholderd: against *c-raw* it isolates the holder's own cost, against *go* the Go client's. *c-fdh-quiet* is the same against a holder run with `--log-level warn` (no audit line per request). *go-raw* is a Go program doing the get with blocking system calls and no client package (`bench/cmd/fdbench/raw.go`), *go-rawfile* the same wrapping each descriptor received in an `*os.File` as `Client.Get` does. *go-fd* is the Go client's `Client.GetFD`, which returns the descriptor without an `*os.File`. *go-metrics* is *go* against a holder run with `--metrics-address` and scraped every second (`BENCH_ONLY=metrics bench/run` runs just this row beside *go*).\n\n")
	p("*go-quiet* is the Go client against fdholderd with `--log-level warn`, beside *go* against the holder at its default settings. *go-listen* is `Client.Listen` (the get, then `net.FileListener` on the descriptor) and the listener's `Close`, what a Go service does at start.\n\n")
	p("| System | Connection | Pinning | p50 | p99 | p50 vs raw C | gets |\n|---|---|---|---|---|---|---|\n")
	for _, pin := range []string{"pinned", "unpinned"} {
		for _, mode := range []string{"conn", "newconn"} {
			base := s.lat["c-raw/"+mode+"/"+pin]
			for _, sys := range []string{"c-raw", "s6", "go", "go-metrics", "c-fdh", "c-fdh-quiet", "go-raw", "go-rawfile", "go-fd", "go-quiet", "go-listen"} {
				m, ok := s.lat[sys+"/"+mode+"/"+pin]
				if !ok {
					continue
				}
				conn := "one for all"
				if mode == "newconn" {
					conn = "new each time"
				}
				p("| %s | %s | %s | %s | %s | %s | %d |\n", sys, conn, pin, us(m.P50), us(m.P99), ratio(m.P50, base.P50), m.Ops)
			}
		}
	}
	// Unpinned, cross-core wakeups dominate and the steps do not add up.
	for _, pin := range []string{"pinned"} {
		l := func(sys string) float64 { return s.lat[sys+"/conn/"+pin].P50 }
		if l("go-raw") == 0 || l("c-fdh-quiet") == 0 {
			continue
		}
		d := func(a, b float64) string { return fmt.Sprintf("%+.1f µs", (a-b)/1e3) }
		p("\n### Where the Go client's get goes, %s (p50s of the rows above, one connection)\n\n", pin)
		p("| Step | p50 | added |\n|---|---|---|\n")
		p("| the physical limit: C client, C server (c-raw) | %s | |\n", us(l("c-raw")))
		p("| fdholderd instead of the C server, audit log off (c-fdh-quiet) | %s | %s |\n", us(l("c-fdh-quiet")), d(l("c-fdh-quiet"), l("c-raw")))
		p("| the audit line of each request, fdholderd's default (c-fdh) | %s | %s |\n", us(l("c-fdh")), d(l("c-fdh"), l("c-fdh-quiet")))
		p("| a Go client with blocking system calls instead of the C client (go-raw) | %s | %s |\n", us(l("go-raw")), d(l("go-raw"), l("c-fdh")))
		p("| the descriptor wrapped in an `*os.File`, as `Client.Get` returns it (go-rawfile) | %s | %s |\n", us(l("go-rawfile")), d(l("go-rawfile"), l("go-raw")))
		p("| the client package: netpoller, deadline, context, decoding (go) | %s | %s |\n", us(l("go")), d(l("go"), l("go-rawfile")))
	}
	p("\n## Throughput and latency against concurrency\n\nEach client has its own connection; clients and servers are not pinned (both cores). ")
	p("![p50 latency of a get against the number of concurrent clients](bench/latency.svg)\n\n")
	p("| Clients | c-raw gets/s | s6 gets/s | c-fdh gets/s | c-fdh-quiet gets/s | go gets/s | c-fdh vs s6 | go vs s6 | s6 p50 / p99 | c-fdh p50 / p99 | go p50 / p99 |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range s.concs {
		g, s6, raw, cf := s.tput[fmt.Sprintf("go/%d", c)], s.tput[fmt.Sprintf("s6/%d", c)], s.tput[fmt.Sprintf("c-raw/%d", c)], s.tput[fmt.Sprintf("c-fdh/%d", c)]
		q := s.tput[fmt.Sprintf("c-fdh-quiet/%d", c)]
		p("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %s | %s / %s | %s / %s | %s / %s |\n", c, raw.OpsPerS, s6.OpsPerS, cf.OpsPerS, q.OpsPerS, g.OpsPerS,
			ratio(cf.OpsPerS, s6.OpsPerS), ratio(g.OpsPerS, s6.OpsPerS), us(s6.P50), us(s6.P99), us(cf.P50), us(cf.P99), us(g.P50), us(g.P99))
	}
	p("\n## Whole processes\n\nTimed by hyperfine (`-N`: no shell), the holders already running with the entry held.\n\n")
	p("| Pinning | Command | median | p99 | mean ± σ | runs |\n|---|---|---|---|---|---|\n")
	for _, pin := range []string{"pinned", "unpinned"} {
		for _, r := range s.proc[pin].Results {
			t := slices.Clone(r.Times)
			slices.Sort(t)
			p99 := 0.0
			if len(t) > 0 {
				p99 = t[len(t)*99/100]
			}
			p("| %s | `%s` | %s | %s | %s ± %s | %d |\n", pin, r.Command, us(r.Median*1e9), us(p99*1e9), us(r.Mean*1e9), us(r.Stddev*1e9), len(r.Times))
		}
	}
	if sc := s.scale; sc != nil {
		p("\n## Many held sockets\n\n")
		p("The holder and the client pinned to core 0. Entries are listening Unix sockets in the abstract namespace, stored by 4 clients in parallel (%.1f s for %d). RSS is VmRSS from /proc/PID/status; bytes per entry is the growth of RSS from %d to %d entries, divided by the entries added. The holder's RLIMIT_NOFILE was %d.\n\n",
			sc.FillSecs, sc.Held-small, small, sc.Held, sc.Limit)
		if sc.Held < sc.Asked {
			p("**%d sockets could not be held on this machine**: its hard RLIMIT_NOFILE is %d and this environment lacks CAP_SYS_RESOURCE (even as root), so no process here can have more open descriptors; every held socket is a descriptor of the holder. The row was measured at %d. Nothing in the holder is per-descriptor-count bound except that limit: with `LimitNOFILE=` raised (systemd) the same run holds %d. Memory and list time grow linearly (a map entry and a page slot per name), so expect about %.0f MiB and %s for %d entries.\n\n",
				sc.Asked, sc.Limit, sc.Held, sc.Asked, float64(sc.RSSSmallKiB)/1024+sc.BytesPerEnt*float64(sc.Asked)/(1<<20), us(sc.ListMedianNs*float64(sc.Asked)/float64(sc.Held)), sc.Asked)
		}
		p("| | %d held | %d held |\n|---|---|---|\n", small, sc.Held)
		p("| RSS | %.1f MiB | %.1f MiB |\n", float64(sc.RSSSmallKiB)/1024, float64(sc.RSSLargeKiB)/1024)
		if len(sc.Rounds) == 0 {
			p("| get p50 / p99, names at random among all held | %s / %s | %s / %s |\n", us(sc.GetSmall.P50), us(sc.GetSmall.P99), us(sc.GetLarge.P50), us(sc.GetLarge.P99))
			if sc.GetLarge10.P50 > 0 {
				p("| get p50 / p99, the same %d names | %s / %s | %s / %s |\n", small, us(sc.GetSmall.P50), us(sc.GetSmall.P99), us(sc.GetLarge10.P50), us(sc.GetLarge10.P99))
			}
		}
		p("| `fdclient list`, median / max of 5 | | %s / %s (%d lines) |\n", us(sc.ListMedianNs), us(sc.ListMaxNs), sc.ListLines)
		if len(sc.Rounds) > 0 {
			p("\nThe get latency, by turns: a second holder (same settings, same core) holds %d entries; each round measures it and the large holder within seconds of each other, %d gets each, alternating which goes first, so that the machine's load weighs on both alike. The ratio is each round's p50 with %d held over its p50 with %d held; the row above is the median of these ratios. For reference, the large holder with %d held, before the fill and minutes earlier: p50 %s, p99 %s.\n\n",
				sc.BaseHeld, sc.Rounds[0].Base.Ops, sc.Held, sc.BaseHeld, small, us(sc.GetSmall.P50), us(sc.GetSmall.P99))
			p("| Round | %d held, names at random: p50 / p99 | %d held, the same %d names: p50 / p99 | second holder, %d held: p50 / p99 | ratio | ratio, same names |\n|---|---|---|---|---|---|\n", sc.Held, sc.Held, small, sc.BaseHeld)
			for i, r := range sc.Rounds {
				p("| %d | %s / %s | %s / %s | %s / %s | %.3f× | %.3f× |\n", i+1, us(r.Large.P50), us(r.Large.P99), us(r.Large10.P50), us(r.Large10.P99), us(r.Base.P50), us(r.Base.P99), r.Ratio, r.Ratio10)
			}
			p("| median | %s | %s | %s | %.3f× | %.3f× |\n", us(sc.medianP50(func(r scaleRound) metrics { return r.Large })),
				us(sc.medianP50(func(r scaleRound) metrics { return r.Large10 })), us(sc.medianP50(func(r scaleRound) metrics { return r.Base })), sc.RatioMedian, sc.Ratio10Median)
		}
	}
	if h, ok := s.restart[true]; ok {
		n := s.restart[false]
		p("\n## Restarts under load\n\n")
		p("gunicorn (2 sync workers) is stopped with SIGTERM and started again %d times, %s apart, under `wrk -t2 -c32 --latency` (`bench/restart/run`): with the socket held by fdholderd and passed by `fdclient exec`, and, as the baseline, binding the port itself. The chart counts 2xx replies per second; ticks on the axis mark the restarts.\n\n", h.Restarts, "1.5 s")
		p("![replies per second through %d restarts, with and without the holder](bench/restarts.svg)\n\n", h.Restarts)
		p("| | requests | socket errors (connect / read / write / timeout) | non-2xx | p50 | p99 | worst |\n|---|---|---|---|---|---|---|\n")
		for _, r := range []record{h, n} {
			name := "with fdholder"
			if !r.Holder {
				name = "without a holder"
			}
			w := r.Wrk
			p("| %s | %d | %d (%d / %d / %d / %d) | %d | %s | %s | %s |\n", name, w.Requests, w.socketErrors(), w.Connect, w.Read, w.Write, w.Timeout, w.Status, us(w.P50US*1e3), us(w.P99US*1e3), us(w.MaxUS*1e3))
		}
	}
	if u := s.upgrade; u != nil && (u.Available == nil || *u.Available) {
		p("\n## In-place upgrades\n\n4 clients get in a loop while the holder is sent SIGUSR2 %d times, 2 s apart. Holder pids: %v. Entry still held at the end: %v.\n\n", u.Upgrades, u.PIDs, u.Held)
		p("| gets | failed | p50 | p99 | max | gets within %.1f s of a signal | their p99 | their max |\n|---|---|---|---|---|---|---|---|\n", u.Window)
		p("| %d | %d | %s | %s | %s | %d | %s | %s |\n", u.Gets, u.Failed, us(u.P50), us(u.P99), us(u.Max), u.UpGets, us(u.UpP99), us(u.UpMax))
		if len(u.Errors) > 0 {
			p("\nFirst errors: `%s`\n", strings.Join(u.Errors, "`, `"))
		}
	}
	if s.gobench != "" {
		p("\n## Go micro-benchmarks\n\n`go test -run '^$' -bench . -benchmem ./internal/proto ./internal/holder`, in the same run. `BenchmarkServerGet` is the holder's get path in-process over a real socket; its client allocates nothing, so the allocations are the holder's.\n\n```\n%s```\n", s.gobench)
	}
	if a, err := os.ReadFile("bench/analysis.md"); err == nil {
		p("\n%s", a)
	}
	p("\n## The exact commands\n\n`$WORK` is the run's scratch directory. Servers: `rawbench serve $WORK/raw.sock`, `s6-fdholder-daemon -c 256 -i RULES $WORK/s6.sock` (rules: root may store, retrieve and list), `fdholderd --socket $WORK/fdh.sock`; each holds one TCP listener named `bench`. Pinned runs start the servers under `taskset -c 0` too.\n\n```\n")
	for _, c := range s.cmds {
		p("%s\n", c)
	}
	for _, pin := range []string{"pinned", "unpinned"} {
		if c, ok := s.procCmd[pin]; ok && !slices.Contains(s.cmds, c) {
			p("%s\n", c)
		}
	}
	p("bench/restart/run holder|none $WORK fdclient fdholderd RESTARTS\n```\n")
	return b.Bytes()
}
