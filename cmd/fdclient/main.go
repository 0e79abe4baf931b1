// Command fdclient is the command-line client of fdholderd. See doc.go and
// "fdclient --help".
//
// Since Go 1.25 the runtime opens the cgroup's CPU limit files at start
// and keeps one open for its GOMAXPROCS updates: that took descriptor 3,
// so "fdclient store --fd 3" without a descriptor 3 passed stored a
// cgroup file ("not a socket (a regular file)") instead of saying that
// none was passed. fdclient runs for a moment and needs no such tuning.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
