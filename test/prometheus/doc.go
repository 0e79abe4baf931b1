// Package prometheus tests deploy/prometheus against the real thing: the
// alert rules with promtool, and a real Prometheus server scraping a real
// fdholderd while a held listener's queue fills and drains.
package prometheus
