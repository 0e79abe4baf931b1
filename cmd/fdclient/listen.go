package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
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

// boundSocket is what net.ListenConfig returns, listener or packet socket.
type boundSocket interface {
	syscall.Conn
	Close() error
}

// run binds the socket, stores it, and prints the bound address. fdclient's
// own copy of the socket is closed on return; the holder's copy keeps it
// open.
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

	sock, local, err := bind(rctx, c.addr)
	if err != nil {
		return fmt.Errorf("listen %q: %w", c.name, err)
	}
	_, err = client.Store(rctx, c.name, sock, fdholder.StoreOptions{Replace: c.replace, TTL: c.ttl})
	if err != nil {
		// The socket was bound by this call, so its file (if any) is ours to
		// remove: a left-over file would make the next attempt fail with
		// "address already in use".
		sock.Close()
		if p := c.addr.unixPath(); p != "" && c.addr.network == "unixgram" {
			os.Remove(p) // a listener removed it on Close already
		}
		if errors.Is(err, fdholder.ErrExists) && !c.replace {
			err = fmt.Errorf("%w (use --replace)", err)
		}
		return err
	}
	if ul, ok := sock.(*net.UnixListener); ok {
		// The holder's copy keeps the socket; its file must stay too, or
		// no client could connect to it by path any more.
		ul.SetUnlinkOnClose(false)
	}
	sock.Close()
	fmt.Fprintln(a.stdout, local)
	return nil
}

// bind binds addr: a listening socket for stream networks (net.Listen), an
// unconnected one for packet networks (net.ListenPacket). It returns the
// socket, which the caller owns, and its local address as a string, with
// the port the kernel picked for port 0.
func bind(ctx context.Context, addr netAddr) (boundSocket, string, error) {
	var lc net.ListenConfig
	if addr.stream() {
		ln, err := lc.Listen(ctx, addr.network, addr.address)
		if err != nil {
			return nil, "", err
		}
		return ln.(boundSocket), ln.Addr().String(), nil
	}
	pc, err := lc.ListenPacket(ctx, addr.network, addr.address)
	if err != nil {
		return nil, "", err
	}
	return pc.(boundSocket), pc.LocalAddr().String(), nil
}
