package fdholder

import (
	"context"
	"fmt"
	"os"
	"path"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// TransferOptions configures Transfer. The zero value transfers every
// entry and fails the ones whose names the destination already holds.
type TransferOptions struct {
	// Names selects the entries whose names match this pattern (path.Match
	// syntax: '*' does not match '/'). Empty: every entry.
	Names string

	// Replace makes the destination replace the entries it already holds
	// under the same names.
	Replace bool
}

// TransferError is an entry Transfer could not copy.
type TransferError struct {
	Name string
	Err  error // wraps a sentinel error (ErrExists, ErrPermission, ...)
}

func (e TransferError) Error() string { return fmt.Sprintf("transfer %q: %v", e.Name, e.Err) }
func (e TransferError) Unwrap() error { return e.Err }

// TransferResult says what Transfer did.
type TransferResult struct {
	Copied int             // entries the destination holds now
	Failed []TransferError // entries it refused, in name order
}

// Transfer copies the entries of c's holder to dst's holder: each entry's
// socket (the very same kernel socket, not a new one) and its metadata (name,
// owner, stored and expiry times). The entries stay held by c's holder too.
// It moves them in batches of at most 253 entries, the most descriptors one
// message can carry (SCM_MAX_FD, unix(7)): a dump page from c, then a load
// of that batch into dst. The error is for a failure that stopped the
// transfer (a holder unreachable, say); entries the destination refused are
// listed in the result.
func (c *Client) Transfer(ctx context.Context, dst *Client, opts TransferOptions) (TransferResult, error) {
	var res TransferResult
	if _, err := path.Match(opts.Names, ""); err != nil {
		return res, fmt.Errorf("transfer: pattern %q: %w: %w", opts.Names, ErrBadRequest, err)
	}
	if sameSocket(c.path, dst.path) {
		// Every entry would come back "already held".
		return res, fmt.Errorf("transfer: %s and %s are the same holder's socket: nothing to copy", c.path, dst.path)
	}
	after := ""
	for {
		rep, fds, err := c.roundTrip(ctx, &proto.Request{Op: proto.OpDump, Name: after, Pattern: opts.Names}, attach{}, true)
		if err != nil {
			return res, fmt.Errorf("transfer: dump from %s: %w", c.path, err)
		}
		if len(fds) != len(rep.Entries) {
			sockfd.CloseAll(fds)
			return res, fmt.Errorf("transfer: dump from %s: %w: %d entries, %d descriptors", c.path, ErrBadDescriptors, len(rep.Entries), len(fds))
		}
		if len(rep.Entries) > 0 {
			err = dst.load(ctx, rep.Entries, fds, opts.Replace, &res)
		}
		sockfd.CloseAll(fds)
		if err != nil {
			return res, fmt.Errorf("transfer: load into %s: %w", dst.path, err)
		}
		if rep.Flags&proto.FlagMore == 0 || len(rep.Entries) == 0 {
			return res, nil
		}
		after = rep.Entries[len(rep.Entries)-1].Name
	}
}

// sameSocket reports whether two socket paths name the same socket file
// (or the same abstract name).
func sameSocket(a, b string) bool {
	if a == b {
		return true
	}
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// load sends entries with their descriptors in as few load requests as fit.
func (c *Client) load(ctx context.Context, entries []proto.Entry, fds []*sockfd.FD, replace bool, res *TransferResult) error {
	for len(entries) > 0 {
		n, size := 0, 0
		for n < len(entries) {
			e := entries[n]
			e.HasQueue, e.Queued, e.Backlog = false, 0, 0
			size += proto.EntrySize(&e)
			if n > 0 && !proto.LoadRequestFits(size) {
				break
			}
			n++
		}
		req := proto.Request{Op: proto.OpLoad, Entries: entries[:n]}
		if replace {
			req.Flags = proto.FlagReplace
		}
		rep, got, err := c.roundTrip(ctx, &req, attach{fds: fds[:n]}, false)
		sockfd.CloseAll(got) // a load reply carries none; a holder that sends some anyway leaks nothing
		if err != nil {
			return err
		}
		if len(rep.Results) != n {
			return fmt.Errorf("%w: %d results for %d entries", ErrBadRequest, len(rep.Results), n)
		}
		for i, r := range rep.Results {
			if err := r.Err(); err != nil {
				res.Failed = append(res.Failed, TransferError{Name: entries[i].Name, Err: err})
			} else {
				res.Copied++
			}
		}
		entries, fds = entries[n:], fds[n:]
	}
	return nil
}
