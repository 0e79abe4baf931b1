package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fdholder/fdholder/internal/version"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program: it parses args, serves until SIGTERM or SIGINT
// (a holderd, holderd.go), and returns the exit status (0 clean, 1 failure, 2
// usage error).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "fdholderd: %v\nRun 'fdholderd --help' for usage.\n", err)
		return 2
	}
	if cfg.version {
		io.WriteString(stdout, version.Line("fdholderd"))
		return 0
	}
	if cfg.check {
		return check(cfg, stdout, stderr)
	}
	log, audit := newLogger(cfg.logFormat, cfg.logLevel, stderr)
	err = newHolderd(cfg, log, audit).run(ctx)
	log.Sync() // and audit's buffered lines: they share the buffer
	if err != nil {
		fmt.Fprintf(stderr, "fdholderd: %v\n", err)
		return 1
	}
	return 0
}
