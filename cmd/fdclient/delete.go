package main

import (
	"context"
	"fmt"
)

// deleteCmd is "delete NAME": the holder forgets the entry and closes its
// copy of the socket.
type deleteCmd struct {
	name string
}

func parseDelete(args []string) (command, error) {
	const cmd = "delete"
	fs := newFlagSet(cmd)
	if err := parseFlags(fs, cmd, args); err != nil {
		return nil, err
	}
	args = fs.Args()
	if err := wantArgs(cmd, args, 1, "NAME"); err != nil {
		return nil, err
	}
	if err := parseName(cmd, args[0]); err != nil {
		return nil, err
	}
	return &deleteCmd{name: args[0]}, nil
}

func (c *deleteCmd) run(ctx context.Context, a *app) error {
	rctx, cancel := a.request(ctx)
	defer cancel()
	client, err := a.dial(rctx)
	if err != nil {
		return fmt.Errorf("delete %q: %w", c.name, err)
	}
	return client.Delete(rctx, c.name)
}
