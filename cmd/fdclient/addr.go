package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// netAddr is a NETWORK:ADDRESS argument, such as tcp:127.0.0.1:8080 or
// unix:/run/app.sock.
type netAddr struct {
	network string // as net.Listen and net.ListenPacket name it
	address string
}

func (n netAddr) String() string { return n.network + ":" + n.address }

// maxUnixAddr is the longest Unix socket address Go can bind: sun_path has
// 108 bytes, one of which ends a path (unix(7)); an abstract name's leading
// NUL is written as @ and counted the same way.
const maxUnixAddr = 107

// parseNetAddr parses NETWORK:ADDRESS, split at the first colon so that the
// address keeps its own colons (tcp:127.0.0.1:8080, tcp6:[::1]:8080). It
// checks what can be checked without binding: the network, the form of a
// host:port, the length of a Unix path.
func parseNetAddr(s string) (netAddr, error) {
	network, address, ok := strings.Cut(s, ":")
	if !ok {
		return netAddr{}, fmt.Errorf("bad address %q: want NETWORK:ADDRESS, such as tcp:127.0.0.1:8080 or unix:/run/app.sock", s)
	}
	a := netAddr{network: network, address: address}
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
		_, port, err := net.SplitHostPort(address)
		if err != nil {
			return netAddr{}, fmt.Errorf("bad address %q: %s wants HOST:PORT, such as 127.0.0.1:8080, [::1]:8080 or :8080", s, network)
		}
		if port == "" {
			// fdholder.ListenFile refuses it too (ErrBadAddress): net.Listen
			// would take it for 0, but it is more often a missing setting.
			return netAddr{}, fmt.Errorf("bad address %q: empty port (0 picks a free one)", s)
		}
		if !validPort(network, port) {
			return netAddr{}, fmt.Errorf("bad address %q: bad port %q (0 picks a free one)", s, port)
		}
	case "unix", "unixpacket", "unixgram":
		switch {
		case address == "" || address == "@":
			return netAddr{}, fmt.Errorf("bad address %q: %s wants a socket path or @name", s, network)
		case len(address) > maxUnixAddr:
			return netAddr{}, fmt.Errorf("bad address %q: %d bytes, the limit for a Unix socket address is %d", s, len(address), maxUnixAddr)
		case strings.IndexByte(address, 0) >= 0:
			return netAddr{}, fmt.Errorf("bad address %q: NUL in a Unix socket address", s)
		}
	default:
		return netAddr{}, fmt.Errorf("bad address %q: unknown network %q (want tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixpacket or unixgram)", s, network)
	}
	return a, nil
}

// validPort accepts a decimal port 0-65535 or a service name of
// /etc/services, as net.Listen does.
func validPort(network, port string) bool {
	if _, err := strconv.ParseUint(port, 10, 16); err == nil {
		return true
	}
	if port[0] >= '0' && port[0] <= '9' {
		return false // a number out of range
	}
	_, err := net.LookupPort(network, port)
	return err == nil
}
