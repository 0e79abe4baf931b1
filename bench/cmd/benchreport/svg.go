package main

import (
	"bytes"
	"fmt"
	"math"
	"strings"
)

// The charts are plain SVG written by hand: no plotting module is allowed
// into go.mod, and two line charts do not need one.

type series struct {
	name  string
	color string
	xs    []float64
	ys    []float64
	ticks []float64 // x positions to mark on the axis (restarts)
}

type panel struct {
	x, y, w, h   float64 // the plot area
	title        string
	xlabel       string
	ylabel       string
	xlog, ylog   bool
	xmin, xmax   float64
	ymin, ymax   float64
	xticks       []float64
	series       []series
	legendInside bool
}

var colors = map[string]string{
	"c-raw": "#555555", "s6": "#d62728", "go": "#1f77b4", "c-fdh": "#2ca02c", "c-fdh-quiet": "#9467bd",
	"with fdholder": "#1f77b4", "without a holder": "#d62728",
}

func (p *panel) px(x float64) float64 {
	if p.xlog {
		return p.x + (math.Log(x)-math.Log(p.xmin))/(math.Log(p.xmax)-math.Log(p.xmin))*p.w
	}
	return p.x + (x-p.xmin)/(p.xmax-p.xmin)*p.w
}

func (p *panel) py(y float64) float64 {
	if p.ylog {
		y = max(y, p.ymin)
		return p.y + p.h - (math.Log(y)-math.Log(p.ymin))/(math.Log(p.ymax)-math.Log(p.ymin))*p.h
	}
	return p.y + p.h - (y-p.ymin)/(p.ymax-p.ymin)*p.h
}

func (p *panel) draw(b *bytes.Buffer) {
	f := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	f(`<text x="%.1f" y="%.1f" font-size="14" font-weight="bold">%s</text>`+"\n", p.x, p.y-12, p.title)
	f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", p.x, p.y, p.w, p.h)
	// y grid
	for _, v := range yTicks(p.ymin, p.ymax, p.ylog) {
		y := p.py(v)
		f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", p.x, y, p.x+p.w, y)
		f(`<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>`+"\n", p.x-4, y+4, short(v))
	}
	for _, v := range p.xticks {
		x := p.px(v)
		f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x, p.y, x, p.y+p.h)
		f(`<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>`+"\n", x, p.y+p.h+14, short(v))
	}
	f(`<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">%s</text>`+"\n", p.x+p.w/2, p.y+p.h+32, p.xlabel)
	f(`<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
		p.x-46, p.y+p.h/2, p.x-46, p.y+p.h/2, p.ylabel)
	for i, s := range p.series {
		var pts []string
		for j := range s.xs {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.px(s.xs[j]), p.py(s.ys[j])))
		}
		f(`<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		if len(s.xs) <= 16 {
			for j := range s.xs {
				f(`<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", p.px(s.xs[j]), p.py(s.ys[j]), s.color)
			}
		}
		for _, t := range s.ticks {
			x := p.px(t)
			off := float64(i) * 6
			f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", x, p.y+p.h-off, x, p.y+p.h-6-off, s.color)
		}
		ly := p.y + 16 + float64(i)*16
		lx := p.x + 10
		if !p.legendInside {
			lx = p.x + p.w + 10
		}
		f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", lx, ly-4, lx+18, ly-4, s.color)
		f(`<text x="%.1f" y="%.1f" font-size="12">%s</text>`+"\n", lx+24, ly, s.name)
	}
}

// yTicks returns the grid values of a y axis from lo to hi: none for a range
// with no data in it (empty, or not positive on a log scale), which a chart
// of a partial results file has.
func yTicks(lo, hi float64, log bool) []float64 {
	var t []float64
	if !(lo < hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) || (log && lo <= 0) {
		return nil
	}
	if log {
		for d := math.Pow(10, math.Floor(math.Log10(lo))); d <= hi; d *= 10 {
			for _, m := range []float64{1, 2, 5} {
				if v := d * m; v >= lo && v <= hi {
					t = append(t, v)
				}
			}
		}
		return t
	}
	step := math.Pow(10, math.Floor(math.Log10((hi-lo)/4)))
	for (hi-lo)/step > 8 {
		step *= 2
	}
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		t = append(t, v)
	}
	return t
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

func svg(w, h float64, panels ...*panel) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for _, p := range panels {
		p.draw(&b)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// latencyChart: p50 latency (log scale) and gets per second against the
// number of concurrent clients, one line per system.
func latencyChart(s *suite) []byte {
	lat := &panel{x: 70, y: 40, w: 330, h: 260, title: "p50 latency of a get", xlabel: "concurrent clients",
		ylabel: "µs (log scale)", xlog: true, ylog: true, legendInside: true}
	tp := &panel{x: 500, y: 40, w: 330, h: 260, title: "gets per second", xlabel: "concurrent clients",
		ylabel: "gets/s", xlog: true}
	if len(s.concs) == 0 {
		return svg(960, 360, lat, tp)
	}
	lat.xmin, lat.xmax = float64(s.concs[0]), float64(s.concs[len(s.concs)-1])
	if lat.xmin == lat.xmax {
		lat.xmax++
	}
	tp.xmin, tp.xmax = lat.xmin, lat.xmax
	lat.ymin, lat.ymax = math.Inf(1), 0
	for _, c := range s.concs {
		lat.xticks = append(lat.xticks, float64(c))
	}
	tp.xticks = lat.xticks
	for _, sys := range []string{"c-raw", "s6", "go", "c-fdh", "c-fdh-quiet"} {
		ls := series{name: sys, color: colors[sys]}
		ts := series{name: sys, color: colors[sys]}
		for _, c := range s.concs {
			m, ok := s.tput[fmt.Sprintf("%s/%d", sys, c)]
			if !ok || m.P50 == 0 {
				continue
			}
			ls.xs, ls.ys = append(ls.xs, float64(c)), append(ls.ys, m.P50/1e3)
			ts.xs, ts.ys = append(ts.xs, float64(c)), append(ts.ys, m.OpsPerS)
			lat.ymin, lat.ymax = min(lat.ymin, m.P50/1e3), max(lat.ymax, m.P50/1e3)
			tp.ymax = max(tp.ymax, m.OpsPerS)
		}
		lat.series = append(lat.series, ls)
		tp.series = append(tp.series, ts)
	}
	lat.ymin = math.Pow(10, math.Floor(math.Log10(lat.ymin)))
	lat.ymax = math.Pow(10, math.Ceil(math.Log10(lat.ymax)))
	tp.ymax *= 1.1
	return svg(960, 360, lat, tp)
}

// restartChart: 2xx replies per second through the restarts, with and
// without the holder, the restarts ticked on the time axis.
func restartChart(s *suite) []byte {
	p := &panel{x: 70, y: 40, w: 720, h: 260, title: "2xx replies per second through gunicorn restarts (wrk -t2 -c32)",
		xlabel: "seconds since wrk started", ylabel: "replies/s"}
	for _, holder := range []bool{true, false} {
		r, ok := s.restart[holder]
		if !ok {
			continue
		}
		name := "without a holder"
		if holder {
			name = "with fdholder"
		}
		sr := series{name: name, color: colors[name]}
		for i, v := range r.Wrk.OKPerS {
			sr.xs = append(sr.xs, float64(i)+0.5)
			sr.ys = append(sr.ys, float64(v))
			p.ymax = max(p.ymax, float64(v))
		}
		p.xmax = max(p.xmax, float64(len(r.Wrk.OKPerS)))
		for _, t := range r.RestartTimes {
			sr.ticks = append(sr.ticks, t-r.Wrk.SeriesStart)
		}
		p.series = append(p.series, sr)
	}
	if p.xmax == 0 {
		p.xmax = 1
	}
	if p.ymax == 0 {
		p.ymax = 1
	}
	p.ymax *= 1.1
	for x := 0.0; x <= p.xmax; x += 10 {
		p.xticks = append(p.xticks, x)
	}
	return svg(960, 360, p)
}
