//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0

package main

import (
	"context"
	"os"
)

// main installs no signal handler: run does, for the one command that
// needs it (see interruptible).
func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
