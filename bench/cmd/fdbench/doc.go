// Command fdbench is the Go side of the benchmark suite (bench/run): it
// drives fdholderd through the public Go client, the way a Go service does,
// and prints one line of JSON per measurement.
//
//	fdbench get     [-mode conn|fd|newconn|newconnfd] [-c N] (-i ITERS | -d DUR) -socket PATH -name NAME
//	fdbench scale   -socket PATH -pid PID -base PATH [-rounds R] -fdclient BIN -n N
//	fdbench upgrade -socket PATH -pid PID -name NAME
//
//	fdbench get -mode raw|rawfile ...  (blocking system calls, no client package)
//
// It is a benchmark driver, not a test: it asserts nothing, it reports.
package main
