// Command benchreport turns the results of one run of the benchmark suite
// (bench/run writes them, one JSON object a line) into docs/benchmarks.md
// and its two charts, docs/bench/latency.svg and docs/bench/restarts.svg.
//
// It computes nothing it did not read: every figure in the report is from
// the results file, every ratio between two figures of that same file.
package main
