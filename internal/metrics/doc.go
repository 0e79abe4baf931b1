// Package metrics exposes what fdholderd holds and does to Prometheus: it
// implements holder.RequestObserver (requests, refusals, their durations,
// open connections) with counters that cost an atomic add per request, and
// a Collector that reads the registry at scrape time (entries by network,
// each TCP listener's accept queue), the fd-store mirror's counts, and the
// process's descriptors. Serve serves them over HTTP at /metrics.
//
// docs/operations.md lists every metric.
package metrics
