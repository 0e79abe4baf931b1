// Package stat holds the summaries the benchmark tools share, so that
// fdbench, which measures, and benchreport, which reports, compute them
// alike.
package stat
