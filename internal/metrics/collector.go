package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/version"
)

// collector reads what the holder holds at scrape time: nothing on the
// request path keeps these figures up to date.
type collector struct {
	reg          *holder.Registry
	maxListeners int // < 0: none
	mirror       MirrorStats
	build        prometheus.Metric

	entries, queued, backlog, omitted *prometheus.Desc
	fdstoreOps, fdstoreFailures       *prometheus.Desc
}

// networks always have an entries series, 0 when nothing of theirs is
// held, so that a dashboard's lines do not vanish; other networks appear
// while held.
var networks = []string{"tcp", "tcp6", "udp", "udp6", "unix", "unixgram", "unixpacket"}

func newCollector(opts Options) *collector {
	max := opts.MaxListeners
	if max == 0 {
		max = DefaultMaxListeners
	}
	v := opts.Version
	if v == "" {
		v = version.Version
	}
	return &collector{
		reg:          opts.Registry,
		maxListeners: max,
		mirror:       opts.Mirror,
		build: prometheus.MustNewConstMetric(prometheus.NewDesc("fdholder_build_info",
			"Always 1; the labels say which fdholderd is running.",
			[]string{"version", "revision", "goversion"}, nil),
			prometheus.GaugeValue, 1, v, buildRevision(), runtime.Version()),
		entries: prometheus.NewDesc("fdholder_entries",
			"Entries held, by network.", []string{"network"}, nil),
		queued: prometheus.NewDesc("fdholder_listener_queued_connections",
			"Connections waiting in a held TCP listener's accept queue (TCP_INFO tcpi_unacked), by entry name.",
			[]string{"name"}, nil),
		backlog: prometheus.NewDesc("fdholder_listener_backlog",
			"The size of a held TCP listener's accept queue (listen(2) backlog, TCP_INFO tcpi_sacked), by entry name.",
			[]string{"name"}, nil),
		omitted: prometheus.NewDesc("fdholder_listener_series_omitted",
			"Held TCP listeners without queue series of their own (beyond --metrics-max-listeners).", nil, nil),
		fdstoreOps: prometheus.NewDesc("fdholder_fdstore_operations_total",
			"Changes mirrored into systemd's file descriptor store, by op (store, remove).", []string{"op"}, nil),
		fdstoreFailures: prometheus.NewDesc("fdholder_fdstore_failures_total",
			"Changes that could not be mirrored into systemd's file descriptor store, by op: a store is then refused, a removal leaves a stale copy.",
			[]string{"op"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.build.Desc()
	if c.reg != nil {
		ch <- c.entries
		ch <- c.queued
		ch <- c.backlog
		ch <- c.omitted
	}
	if c.mirror != nil {
		ch <- c.fdstoreOps
		ch <- c.fdstoreFailures
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- c.build
	if c.reg != nil {
		c.collectEntries(ch)
	}
	if c.mirror != nil {
		s := c.mirror.Stats()
		ch <- prometheus.MustNewConstMetric(c.fdstoreOps, prometheus.CounterValue, float64(s.Stores), "store")
		ch <- prometheus.MustNewConstMetric(c.fdstoreOps, prometheus.CounterValue, float64(s.Removes), "remove")
		ch <- prometheus.MustNewConstMetric(c.fdstoreFailures, prometheus.CounterValue, float64(s.StoreFailures), "store")
		ch <- prometheus.MustNewConstMetric(c.fdstoreFailures, prometheus.CounterValue, float64(s.RemoveFailures), "remove")
	}
}

func isTCPListener(e *proto.Entry) bool {
	return e.Listening && (e.Network == "tcp" || e.Network == "tcp6")
}

// collectEntries walks the registry once, in name order, page by page
// (holder.Registry.List, which reads each TCP listener's queue
// with sockfd.TCPQueue): every entry is counted by network, and the first
// maxListeners TCP listeners are listed with their queues. The filter sees
// each entry under the registry's read lock; the entries it lets through
// fill the page. A page ends at the first entry that does not fit, and the
// next one starts after the last entry listed, so the filter sees the
// entries in between again: it counts each name once (names only grow
// along the walk), and lets through again only the one entry it had let
// through last.
func (c *collector) collectEntries(ch chan<- prometheus.Metric) {
	byNet := make(map[string]int, len(networks))
	for _, n := range networks {
		byNet[n] = 0
	}
	var (
		seen, passed string // the last name counted, the last let through
		any, left    = false, c.maxListeners
		omitted      int
		page         []proto.Entry
		more         = true
	)
	filter := func(e *proto.Entry) bool {
		if any && e.Name <= seen {
			return e.Name == passed
		}
		any, seen = true, e.Name
		byNet[e.Network]++
		if !isTCPListener(e) {
			return false
		}
		if left <= 0 {
			omitted++
			return false
		}
		left--
		passed = e.Name
		return true
	}
	for after := ""; more; {
		page, more = c.reg.List(page[:0], holder.ListOptions{After: after, Visible: filter})
		for i := range page {
			e := &page[i]
			after = e.Name
			if !e.HasQueue {
				continue // the kernel did not say (TCP_INFO failed)
			}
			ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(e.Queued), e.Name)
			ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(e.Backlog), e.Name)
		}
		if len(page) == 0 {
			break
		}
	}
	for n, count := range byNet {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(count), n)
	}
	ch <- prometheus.MustNewConstMetric(c.omitted, prometheus.GaugeValue, float64(omitted))
}
