package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/fdholder/fdholder"
)

// adoptCmd is "adopt [--replace] [--ttl DUR] [--dry-run] --pid PID [--fd N]
// NAME [NETWORK:ADDRESS]": copy a socket out of a running process and store
// it.
type adoptCmd struct {
	name    string
	pid     int
	sel     fdholder.SocketSelector
	replace bool
	dryRun  bool
	ttl     time.Duration
}

func parseAdopt(args []string) (command, error) {
	const cmd = "adopt"
	c := &adoptCmd{}
	fs := newFlagSet(cmd)
	fs.IntVar(&c.pid, "pid", 0, "")
	fs.Func("fd", "", func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return fmt.Errorf("want a descriptor number, not %q", s)
		}
		c.sel.ByFD, c.sel.FD = true, n
		return nil
	})
	fs.BoolVar(&c.replace, "replace", false, "")
	fs.BoolVar(&c.dryRun, "dry-run", false, "")
	ttlFlag(fs, &c.ttl)
	if err := parseFlags(fs, cmd, args); err != nil {
		return nil, err
	}
	if c.pid <= 0 {
		return nil, usagef(cmd, "--pid PID is required: the process whose socket to adopt")
	}
	if err := checkTTL(cmd, c.ttl); err != nil {
		return nil, err
	}
	args = fs.Args()
	if err := wantArgs(cmd, args, min(max(len(args), 1), 2), "NAME [NETWORK:ADDRESS]"); err != nil {
		return nil, err
	}
	c.name = args[0]
	if err := parseName(cmd, c.name); err != nil {
		return nil, err
	}
	if len(args) == 2 {
		addr, err := parseNetAddr(args[1])
		if err != nil {
			return nil, &usageError{cmd: cmd, msg: err.Error()}
		}
		c.sel.Network, c.sel.Address = addr.network, addr.address
	}
	if !c.sel.ByFD && c.sel.Network == "" {
		return nil, usagef(cmd, "say which socket: --fd N, or NETWORK:ADDRESS after NAME")
	}
	if err := c.sel.Validate(); err != nil {
		return nil, usagef(cmd, "%v", err)
	}
	return c, nil
}

// run copies the socket out of the process first, so that a process that
// cannot be read is reported before the holder is contacted (a dry run
// never contacts it), then stores the copy as store does and closes it:
// the holder and the process each keep their own.
func (c *adoptCmd) run(ctx context.Context, a *app) error {
	f, s, err := fdholder.CopySocket(c.pid, c.sel)
	if err != nil {
		if errors.Is(err, fdholder.ErrAmbiguous) {
			err = fmt.Errorf("%w (use --fd N)", err)
		}
		return fmt.Errorf("adopt %q: %w", c.name, err)
	}
	defer f.Close()
	if c.dryRun {
		fmt.Fprintf(a.stdout, "would adopt %q from %v\n", c.name, s)
		return nil
	}
	if err := a.store(ctx, "adopt", c.name, f, fdholder.StoreOptions{Replace: c.replace, TTL: c.ttl}); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "adopted %q from %v\n", c.name, s)
	return nil
}
