package main

import (
	"context"
	"fmt"
	"path"

	"github.com/fdholder/fdholder"
)

// transferCmd is "transfer [--names GLOB] [--replace] --to PATH": copy the
// holder's entries, sockets and metadata, to the holder at PATH.
type transferCmd struct {
	names   string
	replace bool
	to      string
}

func parseTransfer(args []string) (command, error) {
	const cmd = "transfer"
	c := &transferCmd{}
	fs := newFlagSet(cmd)
	fs.StringVar(&c.names, "names", "", "")
	fs.BoolVar(&c.replace, "replace", false, "")
	fs.StringVar(&c.to, "to", "", "")
	if err := parseFlags(fs, cmd, args); err != nil {
		return nil, err
	}
	if err := wantArgs(cmd, fs.Args(), 0, "no argument"); err != nil {
		return nil, err
	}
	if c.to == "" {
		return nil, usagef(cmd, "missing --to PATH: the socket of the holder to copy to")
	}
	if _, err := path.Match(c.names, ""); err != nil {
		return nil, usagef(cmd, "invalid --names pattern %q: %v", c.names, err)
	}
	return c, nil
}

// run copies the entries, in batches, and prints how many arrived. Entries
// the destination refused are listed in the error, whose exit code is that
// of the first of them.
func (c *transferCmd) run(ctx context.Context, a *app) error {
	rctx, cancel := a.request(ctx)
	defer cancel()
	src, err := a.dial(rctx)
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	dst, err := fdholder.Dial(rctx, c.to)
	if err != nil {
		return fmt.Errorf("transfer: destination: %w", err)
	}
	defer dst.Close()
	res, err := src.Transfer(rctx, dst, fdholder.TransferOptions{Names: c.names, Replace: c.replace})
	fmt.Fprintf(a.stdout, "copied %d entries to %s\n", res.Copied, c.to)
	if err != nil {
		return err
	}
	if len(res.Failed) > 0 {
		// The first refusal decides the exit code; the others are listed.
		err := fmt.Errorf("%d entries not copied: %w", len(res.Failed), res.Failed[0])
		for _, f := range res.Failed[1:] {
			err = fmt.Errorf("%w; %v", err, f)
		}
		return err
	}
	return nil
}
