package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// execCmd is "exec [--wait DUR] [--rebind] [--fallback] [--vars FORMS]
// NAME[=NETWORK:ADDRESS]... -- PROG [ARG...]": fetch held sockets and become
// PROG with them, described the systemd way unless --vars says otherwise.
type execCmd struct {
	wait   time.Duration
	rebind bool // move a NAME held on another address to its NETWORK:ADDRESS
	// fallback binds every NAME=NETWORK:ADDRESS directly when the holder
	// is unreachable, so that PROG starts anyway (unheld).
	fallback bool
	vars     execVars
	specs    []execSpec
	prog     string
	args     []string // PROG's arguments, without argv[0]
}

// execSpec is one NAME[=NETWORK:ADDRESS] argument.
type execSpec struct {
	name string
	addr *netAddr // nil: the entry must be held already
}

func parseExec(args []string) (command, error) {
	const cmd = "exec"
	const want = "NAME[=NETWORK:ADDRESS]... -- PROG [ARG...]"
	c := &execCmd{}
	fs := newFlagSet(cmd)
	durationFlag(fs, "wait", &c.wait)
	fs.BoolVar(&c.rebind, "rebind", false, "")
	fs.BoolVar(&c.fallback, "fallback", false, "")
	vars := fs.String("vars", varsSystemd, "")
	if err := parseFlags(fs, cmd, args); err != nil {
		return nil, err
	}
	var err error
	if c.vars, err = parseVars(*vars); err != nil {
		return nil, usagef(cmd, "%v", err)
	}
	if c.wait < 0 {
		return nil, usagef(cmd, "negative --wait %v", c.wait)
	}
	// The flag package consumes a "--" that directly follows the flags,
	// which leaves no NAME before it; otherwise the first "--" left ends
	// the names. A NAME never starts with '-', so no name is mistaken.
	rest := fs.Args()
	if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
		return nil, usagef(cmd, "no NAME before --: want %s", want)
	}
	sep := -1
	for i, s := range rest {
		if s == "--" {
			sep = i
			break
		}
	}
	switch {
	case sep < 0:
		return nil, usagef(cmd, "no -- before PROG: want %s", want)
	case sep == 0:
		return nil, usagef(cmd, "no NAME before --: want %s", want)
	case sep == len(rest)-1:
		return nil, usagef(cmd, "no PROG after --: want %s", want)
	}
	seen := make(map[string]bool)
	for _, s := range rest[:sep] {
		name, addr, hasAddr := strings.Cut(s, "=")
		if strings.HasPrefix(s, "-") {
			return nil, usagef(cmd, "flag %s after a NAME: flags go before the names", s)
		}
		if err := parseName(cmd, name); err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, usagef(cmd, "name %q given twice: each NAME is passed once, at one descriptor", name)
		}
		seen[name] = true
		spec := execSpec{name: name}
		if hasAddr {
			a, err := parseNetAddr(addr)
			if err != nil {
				return nil, usagef(cmd, "%s: %v", name, err)
			}
			spec.addr = &a
		}
		c.specs = append(c.specs, spec)
	}
	for _, s := range c.specs {
		if c.fallback && s.addr == nil {
			return nil, usagef(cmd, "--fallback: %q has no =NETWORK:ADDRESS to bind when the holder is unreachable", s.name)
		}
	}
	if c.vars.names {
		if err := checkFDVars(c.names()); err != nil {
			return nil, usagef(cmd, "%v", err)
		}
	}
	c.prog, c.args = rest[sep+1], rest[sep+2:]
	if c.prog == "" {
		return nil, usagef(cmd, "empty PROG")
	}
	return c, nil
}

// run fetches every entry and replaces fdclient with PROG. It returns only
// on failure.
func (c *execCmd) run(ctx context.Context, a *app) error {
	// Find PROG before touching the holder: a typo must not create entries.
	path, err := exec.LookPath(c.prog)
	if err != nil {
		var ee *exec.Error // names PROG and says "exec:" again
		if errors.As(err, &ee) {
			err = ee.Err
		}
		return fmt.Errorf("exec: cannot run %q: %w", c.prog, err)
	}
	// The sockets PROG gets stay FDs (GetFD, ListenFD): a held socket,
	// which is only passed on, is never an *os.File, which would register
	// it with the runtime's netpoller (and start the netpoller) for
	// nothing. Only a socket exec binds itself (--fallback's Bind) is one
	// first, and fdOf turns it into an FD.
	fds := make([]*sockfd.FD, 0, len(c.specs))
	var moved []*sockfd.FD // old sockets of --rebind, open until PROG starts
	release := func() {
		sockfd.CloseAll(fds)
		sockfd.CloseAll(moved)
		fds, moved = nil, nil
	}
	defer release() // reached only when PROG was not executed
	for _, s := range c.specs {
		fd, old, err := c.fetch(ctx, a, s)
		if err != nil && c.fallback && errors.Is(err, fdholder.ErrUnreachable) {
			release()
			fds, err = c.bindDirectly(ctx, a, err)
			if err != nil {
				return err
			}
			break
		}
		if err != nil && errors.Is(err, fdholder.ErrUnreachable) && c.allBind() {
			return fmt.Errorf("%w (exec --fallback would bind the addresses itself and start PROG unheld)", err)
		}
		if err != nil {
			return err
		}
		fds = append(fds, fd)
		if old != nil {
			moved = append(moved, old)
		}
	}
	// The connection's descriptor is close-on-exec anyway; closing it
	// lets the holder see the end of the conversation at once.
	a.close()

	argv := append([]string{c.prog}, c.args...)
	env := execEnv(os.Environ(), os.Getpid(), c.names(), c.vars)
	err = execWithFDs(path, argv, env, fds)
	// The descriptor table of this thread is no longer the process's (see
	// execWithFDs): return straight to main, which exits.
	fds, moved = nil, nil
	return fmt.Errorf("exec %s: %w", c.prog, err)
}

// fetch returns a duplicate of the socket held under s.name, which the
// caller owns: bound and stored first if s has an address and the name is
// not held. With --wait, a holder that does not answer yet (a sidecar
// container starting beside this one) and a plain name not held yet are
// asked for again until the wait is over. With --rebind, a name held on
// another address is moved: old is a duplicate of the socket it had, which
// the caller keeps open (close-on-exec) until PROG starts, so that the old
// socket lives until its replacement is served.
func (c *execCmd) fetch(ctx context.Context, a *app, s execSpec) (fd, old *sockfd.FD, err error) {
	var deadline time.Time
	if c.wait > 0 {
		deadline = time.Now().Add(c.wait)
	}
	// A short first interval notices a store that is on its way; growing
	// it keeps a long wait from keeping the holder busy.
	interval := 10 * time.Millisecond
	const maxInterval = 500 * time.Millisecond
	for {
		fd, old, err := c.fetchOnce(ctx, a, s)
		if err == nil || c.wait == 0 || !s.retryable(err) {
			return fd, old, err
		}
		if errors.Is(err, fdholder.ErrUnreachable) {
			a.close() // a holder that went away; dial its successor
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil, fmt.Errorf("%w (waited %v)", err, c.wait)
		}
		t := time.NewTimer(min(interval, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, fmt.Errorf("exec: waiting for %q: %w", s.name, ctx.Err())
		case <-t.C:
		}
		interval = min(interval*2, maxInterval)
	}
}

// names returns the NAMEs, in the order PROG gets their sockets.
func (c *execCmd) names() []string {
	names := make([]string, len(c.specs))
	for i, s := range c.specs {
		names[i] = s.name
	}
	return names
}

// allBind reports whether every NAME comes with an address, as
// --fallback needs.
func (c *execCmd) allBind() bool {
	for _, s := range c.specs {
		if s.addr == nil {
			return false
		}
	}
	return true
}

// bindDirectly is --fallback: the holder is unreachable (why), so every
// NAME=NETWORK:ADDRESS is bound here, unheld, with a warning on stderr, and
// the returned sockets go to PROG as the held ones would have.
func (c *execCmd) bindDirectly(ctx context.Context, a *app, why error) ([]*sockfd.FD, error) {
	fmt.Fprintf(a.stderr, "fdclient: exec: warning: %s\n", strings.TrimPrefix(why.Error(), "exec: "))
	fds := make([]*sockfd.FD, 0, len(c.specs))
	for _, s := range c.specs {
		fd, err := fdOf(fdholder.Bind(ctx, s.addr.network, s.addr.address))
		if err != nil {
			sockfd.CloseAll(fds)
			return nil, fmt.Errorf("exec --fallback %q: %w", s.name, err)
		}
		fds = append(fds, fd)
		fmt.Fprintf(a.stderr, "fdclient: exec: warning: --fallback: bound %s for %q directly; it is not held, so connections are refused while PROG restarts until the holder is back\n", s.addr, s.name)
	}
	return fds, nil
}

// move is --rebind: it keeps a duplicate of the socket held under s.name
// (old), binds s's address and stores the new socket with replace (the
// holder closes its copy of the old one), and returns the new one.
func (c *execCmd) move(ctx context.Context, a *app, client *fdholder.Client, s execSpec, held string) (fd, old *sockfd.FD, err error) {
	oldFD, _, err := client.GetFD(ctx, s.name)
	if err != nil {
		return nil, nil, err
	}
	old = (*sockfd.FD)(oldFD)
	defer func() {
		if err != nil {
			old.Close()
			old = nil
		}
	}()
	if _, err := client.ListenAndStore(ctx, s.name, s.addr.network, s.addr.address, fdholder.StoreOptions{Replace: true}); err != nil {
		return nil, nil, err
	}
	newFD, _, err := client.GetFD(ctx, s.name)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(a.stderr, "fdclient: exec: moved %q from %s to %s; the old socket closes as PROG starts\n", s.name, held, s.addr)
	return (*sockfd.FD)(newFD), old, nil
}

// retryable tells whether --wait asks again after err: the holder did not
// answer, or a plain name is not held yet.
func (s execSpec) retryable(err error) bool {
	return errors.Is(err, fdholder.ErrUnreachable) || s.addr == nil && errors.Is(err, fdholder.ErrNotFound)
}

// fetchOnce is one attempt of fetch.
func (c *execCmd) fetchOnce(ctx context.Context, a *app, s execSpec) (fd, old *sockfd.FD, err error) {
	if s.addr == nil {
		fd, err := c.get(ctx, a, s.name)
		return fd, nil, err
	}
	// No timer either (requestUntimed): every wait of ListenFD's get,
	// bind and store honours the deadline itself, and only a lost race to
	// create the entry waits on a timer (its bounded backoff).
	rctx := a.requestUntimed(ctx)
	client, err := a.dial(rctx)
	if err != nil {
		return nil, nil, fmt.Errorf("exec: %q: %w", s.name, err)
	}
	got, _, err := client.ListenFD(rctx, s.name, s.addr.network, s.addr.address)
	var me *fdholder.MismatchError
	if !errors.As(err, &me) {
		return (*sockfd.FD)(got), nil, err
	}
	held := me.Held.Network + ":" + me.Held.Address
	if !fdholder.NetworkMatches(s.addr.network, me.Held.Network) {
		return nil, nil, fmt.Errorf("exec %q: held socket is %s, not %s: delete %q first to start over", s.name, held, s.addr, s.name)
	}
	if !c.rebind {
		return nil, nil, fmt.Errorf("exec %q: held socket is %s, not %s as asked, and PROG would serve %s: "+
			"use 'exec --rebind' to move %q to %s, or ask for %s", s.name, held, s.addr, me.Held.Address, s.name, s.addr.address, held)
	}
	return c.move(rctx, a, client, s, held)
}

// get is one Client.GetFD bounded by --timeout: no *os.File, nor a timer
// (requestUntimed).
func (c *execCmd) get(ctx context.Context, a *app, name string) (*sockfd.FD, error) {
	rctx := a.requestUntimed(ctx)
	client, err := a.dial(rctx)
	if err != nil {
		return nil, fmt.Errorf("exec: %q: %w", name, err)
	}
	fd, _, err := client.GetFD(rctx, name)
	// An fdholder.FD is a sockfd.FD under the public name.
	return (*sockfd.FD)(fd), err
}

// fdOf is f, a socket exec bound (an *os.File already), as an FD:
// a duplicate; f is closed. An err is passed through.
func fdOf(f *os.File, err error) (*sockfd.FD, error) {
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return sockfd.DupConn(f)
}

// listenEnv appends to env the variables of sd_listen_fds(3) for names,
// passed at descriptors 3, 4, ... of process pid. env must hold no LISTEN_*
// variable (execEnv drops every inherited one): a stale LISTEN_FDNAMES or a
// LISTEN_PIDFDID (systemd 254 and later) from fdclient's own parent would
// describe descriptors PROG does not have.
func listenEnv(env []string, pid int, names []string) []string {
	return append(env,
		"LISTEN_FDS="+strconv.Itoa(len(names)),
		"LISTEN_PID="+strconv.Itoa(pid),
		"LISTEN_FDNAMES="+strings.Join(names, ":"),
	)
}
