package fdholder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/fdholder/fdholder/internal/sockfd"
)

// Listen returns a listener for the socket held under name. If none is
// held, it binds network/address (as net.Listen does: tcp, tcp4, tcp6, unix
// or unixpacket), stores the new socket under name, and returns it. Either
// way the holder keeps a copy, so the socket outlives the caller: a
// restarted caller gets the very same socket back, and connections that
// arrive in between wait in its accept queue.
//
// The caller owns the listener and must close it; closing it leaves the
// holder's copy open (and a Unix socket's file in place).
func (c *Client) Listen(ctx context.Context, name, network, address string) (net.Listener, error) {
	f, _, err := c.ListenFile(ctx, name, network, address)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", name, err)
	}
	return ln, nil
}

// ListenPacket is Listen for packet sockets (udp, udp4, udp6, unixgram), as
// net.ListenPacket binds them. The caller owns the connection and must close
// it; the holder's copy stays open.
func (c *Client) ListenPacket(ctx context.Context, name, network, address string) (net.PacketConn, error) {
	f, _, err := c.ListenFile(ctx, name, network, address)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", name, err)
	}
	return pc, nil
}

// ListenFile is the get-or-create step behind Listen and ListenPacket: it
// returns the socket held under name as an *os.File that the caller owns
// and must close, and reports whether it was bound and stored by this call.
// A held socket of another network or address than the one asked for is
// a *MismatchError (see AddressMatches): a changed address must be moved
// explicitly (ListenAndStore with Replace), not silently ignored.
//
// For tcp and udp, port 0 asks for any free port, and a later call with
// port 0 gets the held socket whatever port it has. An empty port
// ("127.0.0.1:") is ErrBadAddress, although net.Listen takes it for 0: it
// is far more often a missing setting ("127.0.0.1:"+port) than a wish for
// a port picked at random, which clients would then have to discover.
//
// If two processes race to create the same entry, one binds and stores, and
// the other gets the stored socket.
func (c *Client) ListenFile(ctx context.Context, name, network, address string) (f *os.File, created bool, err error) {
	fd, created, err := c.ListenFD(ctx, name, network, address)
	if err != nil {
		return nil, false, err
	}
	return fd.sock().File("fdholder:" + name), created, nil
}

// ListenFD is ListenFile without the *os.File, as GetFD is Get without
// it: it returns the socket held under name (bound and stored first if
// name is not held) as an FD that the caller owns and must close, for a
// program that only passes the socket on (fdclient exec). Its errors are
// ListenFile's. A socket this call binds went through net.ListenConfig,
// which registers it with the netpoller; the FD is a duplicate made out
// of it.
func (c *Client) ListenFD(ctx context.Context, name, network, address string) (fd *FD, created bool, err error) {
	kind, err := listenKind(network, address)
	if err != nil {
		return nil, false, fmt.Errorf("listen %q: %w", name, err)
	}
	backoff := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		held, e, err := c.GetFD(ctx, name)
		if err == nil {
			if !NetworkMatches(network, e.Network) || !AddressMatches(ctx, network, address, e.Address) {
				held.Close()
				return nil, false, &MismatchError{Name: name, Held: e, Network: network, Address: address}
			}
			return held, false, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, false, err
		}
		bound, _, err := c.bindAndStore(ctx, name, kind, network, address, StoreOptions{}, true)
		// Lost a race with another process creating the same entry: its
		// store beat ours, or its socket holds the address and its store
		// is on the way. Get it, giving that store a moment to land.
		if attempt < listenRetries && (errors.Is(err, ErrExists) || errors.Is(err, syscall.EADDRINUSE)) {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil, false, fmt.Errorf("listen %q: %w", name, ctx.Err())
			}
			backoff *= 2
			continue
		}
		if err != nil {
			return nil, false, err
		}
		return (*FD)(bound), true, nil
	}
}

// ErrMismatch is wrapped by a *MismatchError.
var ErrMismatch = errors.New("held socket does not match")

// ErrBadAddress is returned by ListenFile, Listen, ListenPacket,
// ListenAndStore and Bind for an address they refuse before binding: a
// tcp or udp address with an empty port.
var ErrBadAddress = errors.New("bad address")

// MismatchError is ListenFile's error when name is held on another network
// or address than the one asked for: serving the held socket would
// silently ignore a changed address.
type MismatchError struct {
	Name             string
	Held             Entry  // the held entry
	Network, Address string // what was asked for
}

func (e *MismatchError) Error() string {
	if !NetworkMatches(e.Network, e.Held.Network) {
		return fmt.Sprintf("listen %q: held socket is %s %s, not %s", e.Name, e.Held.Network, e.Held.Address, e.Network)
	}
	return fmt.Sprintf("listen %q: held socket is on %s, not %s as asked", e.Name, e.Held.Address, e.Address)
}

// Unwrap returns ErrMismatch.
func (e *MismatchError) Unwrap() error { return ErrMismatch }

// AddressMatches reports whether a held socket bound to held (as Entry
// reports it) serves a request for address on network (as net.Listen
// takes it): the same path for the unix networks; for tcp and udp the same
// port unless the request's is 0 (an empty port, which ListenFile refuses,
// matches nothing), and the same IP, or both unspecified,
// or one the request's host name resolves to (a name that does not
// resolve is not held against the socket). ctx bounds the service and host
// name look-ups (a look-up it cuts short counts as one that failed).
func AddressMatches(ctx context.Context, network, address, held string) bool {
	switch network {
	case "unix", "unixpacket", "unixgram":
		return address == held
	}
	wantHost, wantPort, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	heldHost, heldPort, err := net.SplitHostPort(held)
	if err != nil {
		return false
	}
	if wantPort == "" {
		return false
	}
	if wantPort != "0" {
		want, err := net.DefaultResolver.LookupPort(ctx, network, wantPort)
		if err != nil || strconv.Itoa(want) != heldPort {
			return false
		}
	}
	heldIP, err := netip.ParseAddr(heldHost)
	if err != nil {
		return false
	}
	heldIP = heldIP.Unmap()
	if wantHost == "" {
		return heldIP.IsUnspecified()
	}
	if wantIP, err := netip.ParseAddr(wantHost); err == nil {
		wantIP = wantIP.Unmap()
		return wantIP == heldIP || wantIP.IsUnspecified() && heldIP.IsUnspecified()
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", wantHost)
	if err != nil {
		return true
	}
	for _, ip := range ips {
		if ip.Unmap() == heldIP {
			return true
		}
	}
	return false
}

// listenRetries bounds how often ListenFile goes back to Get after losing a
// race to create an entry: with doubling waits from 5 ms, about 0.6 s in all
// before an address held by an unrelated socket is reported as in use.
const listenRetries = 7

type netKind int

const (
	streamKind netKind = iota
	packetKind
)

// listenKind checks network and address as ListenFile takes them, before
// anything is bound, and returns the kind of socket network binds.
func listenKind(network, address string) (netKind, error) {
	kind, err := networkKind(network)
	if err != nil {
		return 0, err
	}
	switch network {
	case "unix", "unixpacket", "unixgram":
		return kind, nil
	}
	// A malformed host:port is left to net.Listen, whose error says why.
	if _, port, err := net.SplitHostPort(address); err == nil && port == "" {
		return 0, fmt.Errorf("%w %q: empty port (0 picks a free one)", ErrBadAddress, address)
	}
	return kind, nil
}

func networkKind(network string) (netKind, error) {
	switch network {
	case "tcp", "tcp4", "tcp6", "unix", "unixpacket":
		return streamKind, nil
	case "udp", "udp4", "udp6", "unixgram":
		return packetKind, nil
	}
	return 0, fmt.Errorf("unknown network %q (want tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixgram or unixpacket)", network)
}

// NetworkMatches reports whether a held socket of network held (as Entry
// reports it) serves a request for network want (as net.Listen names it).
// tcp and udp match either address family; tcp4 and udp4 want IPv4, tcp6
// and udp6 IPv6.
func NetworkMatches(want, held string) bool {
	switch want {
	case "tcp":
		return held == "tcp" || held == "tcp6"
	case "tcp4":
		return held == "tcp"
	case "udp":
		return held == "udp" || held == "udp6"
	case "udp4":
		return held == "udp"
	}
	return want == held
}

// boundSocket is what net.ListenConfig binds: a listener or a packet socket.
type boundSocket interface {
	syscall.Conn
	Close() error
}

// ListenAndStore binds a new socket to address as ListenFile does when name
// is not held (tcp, tcp4, tcp6, unix and unixpacket listen; udp, udp4, udp6
// and unixgram are packet sockets), stores it under name with opts, and
// returns the entry as the holder now holds it. This process keeps no copy:
// the socket lives on in the holder, and a Unix socket's file stays in
// place. If the store fails (ErrExists without opts.Replace, say), the
// socket is closed and a Unix socket's file removed.
func (c *Client) ListenAndStore(ctx context.Context, name, network, address string, opts StoreOptions) (Entry, error) {
	kind, err := listenKind(network, address)
	if err != nil {
		return Entry{}, fmt.Errorf("listen %q: %w", name, err)
	}
	_, e, err := c.bindAndStore(ctx, name, kind, network, address, opts, false)
	return e, err
}

// bindAndStore binds a new socket and stores it under name with opts. With
// keep it also returns a duplicate owned by the caller.
func (c *Client) bindAndStore(ctx context.Context, name string, kind netKind, network, address string, opts StoreOptions, keep bool) (*sockfd.FD, Entry, error) {
	sock, err := bind(ctx, kind, network, address)
	if err != nil {
		return nil, Entry{}, fmt.Errorf("listen %q: %w", name, err)
	}
	defer sock.Close()
	var fd *sockfd.FD
	if keep {
		var err error
		if fd, err = sockfd.DupConn(sock); err != nil {
			c.unbind(network, address)
			return nil, Entry{}, fmt.Errorf("listen %q: %w", name, err)
		}
	}
	e, err := c.Store(ctx, name, sock, opts)
	if err != nil {
		fd.Close()
		c.unbind(network, address)
		return nil, Entry{}, err
	}
	return fd, e, nil
}

// bind binds a new socket to address: a listener for streamKind, a packet
// socket for packetKind. A Unix socket's file outlives the returned
// socket's Close.
func bind(ctx context.Context, kind netKind, network, address string) (boundSocket, error) {
	var lc net.ListenConfig
	if kind == packetKind {
		pc, err := lc.ListenPacket(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return pc.(boundSocket), nil
	}
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		// The socket outlives this listener: keep its file.
		ul.SetUnlinkOnClose(false)
	}
	return ln.(boundSocket), nil
}

// Bind binds a new socket to address as ListenFile does when name is not
// held, but keeps it away from the holder: the fallback of a service that
// must start while the holder is unreachable (fdclient exec --fallback).
// The returned *os.File is owned by the caller, who must close it; a Unix
// socket's file stays in place.
func Bind(ctx context.Context, network, address string) (*os.File, error) {
	kind, err := listenKind(network, address)
	if err != nil {
		return nil, err
	}
	sock, err := bind(ctx, kind, network, address)
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	fd, err := sockfd.DupConn(sock)
	if err != nil {
		return nil, err
	}
	return fd.File("fdholder:" + address), nil
}

// unbind removes the file of a Unix socket this process bound but could not
// store, so that it does not block the next attempt.
func (c *Client) unbind(network, address string) {
	if (network == "unix" || network == "unixpacket" || network == "unixgram") && address != "" && address[0] != '@' {
		os.Remove(address)
	}
}
