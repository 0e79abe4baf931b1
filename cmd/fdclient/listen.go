package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fdholder/fdholder"
)

// listenCmd is "listen [--replace] [--ttl DUR] NAME NETWORK:ADDRESS": bind a
// new socket and store it.
type listenCmd struct {
	name    string
	addr    netAddr
	replace bool
	ttl     time.Duration
}

func parseListen(args []string) (command, error) {
	const cmd = "listen"
	c := &listenCmd{}
	fs := newFlagSet(cmd)
	fs.BoolVar(&c.replace, "replace", false, "")
	ttlFlag(fs, &c.ttl)
	if err := parseFlags(fs, cmd, args); err != nil {
		return nil, err
	}
	if err := checkTTL(cmd, c.ttl); err != nil {
		return nil, err
	}
	args = fs.Args()
	if err := wantArgs(cmd, args, 2, "NAME NETWORK:ADDRESS"); err != nil {
		return nil, err
	}
	c.name = args[0]
	if err := parseName(cmd, c.name); err != nil {
		return nil, err
	}
	addr, err := parseNetAddr(args[1])
	if err != nil {
		return nil, &usageError{cmd: cmd, msg: err.Error()}
	}
	c.addr = addr
	return c, nil
}

// run binds the socket and stores it (fdholder.Client.ListenAndStore), and
// prints the bound address as the holder reports it. fdclient keeps no copy
// of the socket; the holder's keeps it open.
func (c *listenCmd) run(ctx context.Context, a *app) error {
	rctx, cancel := a.request(ctx)
	defer cancel()
	client, err := a.dial(rctx)
	if err != nil {
		return fmt.Errorf("listen %q: %w", c.name, err)
	}
	if !c.replace {
		// Binding first would report a held name as "address already in
		// use" whenever the held socket has the address asked for: ask the
		// holder first. A store racing with this one still fails cleanly
		// with ErrExists below.
		f, _, err := client.Get(rctx, c.name)
		if err == nil {
			f.Close()
			return fmt.Errorf("listen %q: %w (use --replace)", c.name, fdholder.ErrExists)
		}
		if !errors.Is(err, fdholder.ErrNotFound) {
			return fmt.Errorf("listen %q: %w", c.name, err)
		}
	}

	e, err := client.ListenAndStore(rctx, c.name, c.addr.network, c.addr.address,
		fdholder.StoreOptions{Replace: c.replace, TTL: c.ttl})
	if err != nil {
		if errors.Is(err, fdholder.ErrExists) && !c.replace {
			err = fmt.Errorf("%w (use --replace)", err)
		}
		return err
	}
	fmt.Fprintln(a.stdout, e.Address)
	return nil
}
