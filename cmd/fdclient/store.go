package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
)

// storeCmd is "store [--fd N] [--replace] [--ttl DUR] NAME": store a
// descriptor fdclient inherited.
type storeCmd struct {
	name    string
	fd      int
	replace bool
	ttl     time.Duration
}

func parseStore(args []string) (command, error) {
	const cmd = "store"
	c := &storeCmd{}
	fs := newFlagSet(cmd)
	fs.IntVar(&c.fd, "fd", 0, "")
	fs.BoolVar(&c.replace, "replace", false, "")
	ttlFlag(fs, &c.ttl)
	if err := parseFlags(fs, cmd, args); err != nil {
		return nil, err
	}
	if c.fd < 0 {
		return nil, usagef(cmd, "negative --fd %d", c.fd)
	}
	if err := checkTTL(cmd, c.ttl); err != nil {
		return nil, err
	}
	args = fs.Args()
	if err := wantArgs(cmd, args, 1, "NAME"); err != nil {
		return nil, err
	}
	c.name = args[0]
	if err := parseName(cmd, c.name); err != nil {
		return nil, err
	}
	return c, nil
}

// run hands descriptor c.fd to the holder. The descriptor stays open in
// fdclient until it exits; the holder keeps its own copy.
func (c *storeCmd) run(ctx context.Context, a *app) error {
	// Check before anything else opens a descriptor: a number that is not
	// open now must not silently name the holder connection or a runtime
	// descriptor a moment later.
	if _, err := unix.FcntlInt(uintptr(c.fd), unix.F_GETFD, 0); err != nil {
		if errors.Is(err, unix.EBADF) {
			return fmt.Errorf("store %q: descriptor %d is not open in fdclient (pass it with a redirection such as %d<&...)", c.name, c.fd, c.fd)
		}
		return fmt.Errorf("store %q: descriptor %d: %w", c.name, c.fd, os.NewSyscallError("fcntl F_GETFD", err))
	}
	// os.NewFile wraps the descriptor without changing its flags (it is
	// shared with whoever passed it). Client.Store sends it through
	// SyscallConn, never Fd, which would make it blocking for everyone.
	var f *os.File
	switch c.fd {
	case 0, 1, 2:
		// The os package owns these already; a second *os.File would
		// close them when collected.
		f = []*os.File{os.Stdin, os.Stdout, os.Stderr}[c.fd]
	default:
		f = os.NewFile(uintptr(c.fd), fmt.Sprintf("fd %d", c.fd))
		defer f.Close()
	}
	return a.store(ctx, "store", c.name, f, fdholder.StoreOptions{Replace: c.replace, TTL: c.ttl})
}

// store hands f to the holder under name with opts, for the command op
// (store, adopt): one request, bounded by --timeout. f stays the caller's.
func (a *app) store(ctx context.Context, op, name string, f *os.File, opts fdholder.StoreOptions) error {
	rctx, cancel := a.request(ctx)
	defer cancel()
	client, err := a.dial(rctx)
	if err != nil {
		return fmt.Errorf("%s %q: %w", op, name, err)
	}
	if _, err := client.Store(rctx, name, f, opts); err != nil {
		if errors.Is(err, fdholder.ErrExists) && !opts.Replace {
			err = fmt.Errorf("%w (use --replace)", err)
		}
		return err
	}
	return nil
}
