package metrics

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fdholder/fdholder/internal/fdstore"
	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/proto"
)

// DefaultMaxListeners is how many TCP listeners get series of their own
// unless Options says otherwise: enough for any holder a person watches on
// a dashboard, few enough that a holder of 100,000 listeners does not make
// 200,000 series per scrape.
const DefaultMaxListeners = 1000

// Options configures Metrics. The zero value is valid.
type Options struct {
	// Registry is read at every scrape: entries by network and the accept
	// queue of each TCP listener. Nil: no entry metrics.
	Registry *holder.Registry

	// MaxListeners caps how many TCP listeners, the first in name order,
	// get their own queue series; the others are only counted in
	// fdholder_listener_series_omitted. 0: DefaultMaxListeners; negative:
	// none.
	MaxListeners int

	// Mirror, when the holder mirrors its entries into systemd's file
	// descriptor store, is read at every scrape. Nil: no fd-store metrics.
	Mirror MirrorStats

	// Version is reported in fdholder_build_info; "" takes the one
	// --version prints (internal/version).
	Version string
}

// MirrorStats is what Metrics reads of the fd-store mirror
// (*fdstore.Mirror).
type MirrorStats interface {
	Stats() fdstore.Stats
}

// Metrics holds fdholderd's metrics. Its RequestObserver methods are safe
// for concurrent use and allocate nothing once a series exists.
type Metrics struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	refusals  [2]prometheus.Counter // policy, limit
	conns     prometheus.Gauge

	// The series of requests and durations are made on first use, and
	// reached afterwards through these without a label lookup (which
	// would allocate): by op, and by op and result code.
	mu       sync.Mutex
	counters [numOps][numCodes]atomic.Pointer[counter]
	observe  [numOps]atomic.Pointer[observer]
}

type counter struct{ prometheus.Counter }
type observer struct{ prometheus.Observer }

// The ops and codes that have series of their own; any other value is
// counted under "unknown".
const (
	numOps   = int(proto.OpLoad) + 1       // 0: unknown
	numCodes = int(proto.CodeInternal) + 2 // the last: unknown
)

// codeNames are the result label values, one per proto.Code: snake_case
// versions of the codes' names in docs/protocol.md.
var codeNames = [numCodes]string{
	proto.CodeOK:                 "ok",
	proto.CodeBadRequest:         "bad_request",
	proto.CodeUnsupportedVersion: "unsupported_version",
	proto.CodeUnknownOp:          "unknown_op",
	proto.CodeInvalidName:        "invalid_name",
	proto.CodeNotFound:           "not_found",
	proto.CodeExists:             "exists",
	proto.CodeNotSocket:          "not_socket",
	proto.CodeBadDescriptors:     "bad_descriptors",
	proto.CodePermission:         "permission",
	proto.CodeTooLarge:           "too_large",
	proto.CodeLimit:              "limit",
	proto.CodeInternal:           "internal",
	numCodes - 1:                 "unknown",
}

func opIndex(op proto.Op) int {
	if op >= proto.OpStore && op <= proto.OpLoad {
		return int(op)
	}
	return 0
}

func opName(i int) string {
	if i == 0 {
		return "unknown"
	}
	return proto.Op(i).String()
}

func codeIndex(c proto.Code) int {
	if int(c) < numCodes-1 {
		return int(c)
	}
	return numCodes - 1
}

// durationBuckets, in seconds: a request takes tens of microseconds; the
// top buckets catch a store that waits on the fd-store mirror and a reply
// to a client that does not read.
var durationBuckets = []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 10e-3, 50e-3, 250e-3, 1}

// New returns the metrics of a holder, registered in a registry of their
// own together with the process collector (process_open_fds,
// process_max_fds...) and the Go runtime collector.
func New(opts Options) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fdholder_requests_total",
			Help: "Requests answered, by op and result.",
		}, []string{"op", "result"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fdholder_request_duration_seconds",
			Help:    "Time from a request's arrival to its reply being sent, by op.",
			Buckets: durationBuckets,
		}, []string{"op"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fdholder_open_connections",
			Help: "Client connections open, those being refused beyond --max-conns included.",
		}),
	}
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fdholder_refusals_total",
		Help: "Requests refused, by reason: policy (denied by the access policy) or limit (a holder limit was reached).",
	}, []string{"reason"})
	m.refusals[0] = refusals.WithLabelValues("policy")
	m.refusals[1] = refusals.WithLabelValues("limit")
	// Every op has its histogram from the start, so that a dashboard shows
	// all of them; a result appears once it happens.
	for i := 1; i < numOps; i++ {
		m.observe[i].Store(&observer{m.durations.WithLabelValues(opName(i))})
	}
	m.reg.MustRegister(m.requests, m.durations, refusals, m.conns,
		newCollector(opts),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	return m
}

// Registry returns the registry to serve (promhttp.HandlerFor).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Request implements holder.RequestObserver.
func (m *Metrics) Request(op proto.Op, code proto.Code, took time.Duration) {
	o, c := opIndex(op), codeIndex(code)
	ctr := m.counters[o][c].Load()
	if ctr == nil {
		ctr = m.slowCounter(o, c)
	}
	ctr.Inc()
	obs := m.observe[o].Load()
	if obs == nil {
		obs = m.slowObserver(o)
	}
	obs.Observe(took.Seconds())
	switch code {
	case proto.CodePermission:
		m.refusals[0].Inc()
	case proto.CodeLimit:
		m.refusals[1].Inc()
	}
}

// slowCounter makes the series of op o and code c, once.
func (m *Metrics) slowCounter(o, c int) *counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ctr := m.counters[o][c].Load(); ctr != nil {
		return ctr
	}
	ctr := &counter{m.requests.WithLabelValues(opName(o), codeNames[c])}
	m.counters[o][c].Store(ctr)
	return ctr
}

// slowObserver makes the histogram of op o (only "unknown" is not made
// in advance), once.
func (m *Metrics) slowObserver(o int) *observer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if obs := m.observe[o].Load(); obs != nil {
		return obs
	}
	obs := &observer{m.durations.WithLabelValues(opName(o))}
	m.observe[o].Store(obs)
	return obs
}

// ConnOpened implements holder.RequestObserver.
func (m *Metrics) ConnOpened() { m.conns.Inc() }

// ConnClosed implements holder.RequestObserver.
func (m *Metrics) ConnClosed() { m.conns.Dec() }

// buildRevision returns the VCS revision the build recorded, or
// "unknown" (a release build records none: it is reproducible).
func buildRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
