package fdholder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/procfd"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// Errors of CopySocket and Adopt, for errors.Is. A kernel without
// pidfd_getfd(2) (before Linux 5.6) fails with an error that is
// errors.ErrUnsupported.
var (
	// ErrNoProcess: no process has the pid, or it exited.
	ErrNoProcess = procfd.ErrNoProcess

	// ErrPtraceDenied: the kernel refused access to the process's
	// descriptors. Copying them needs ptrace attach rights (ptrace(2)): the
	// same user as a dumpable process, or CAP_SYS_PTRACE, within what
	// kernel.yama.ptrace_scope allows. The error says which rule failed.
	ErrPtraceDenied = procfd.ErrDenied

	// ErrNoMatch: the process has no socket that the SocketSelector selects.
	ErrNoMatch = errors.New("no matching socket")

	// ErrAmbiguous: several sockets match (say one per SO_REUSEPORT socket
	// of a group); select one by its descriptor number.
	ErrAmbiguous = errors.New("several sockets match")
)

// SocketSelector says which socket of another process CopySocket takes: the
// descriptor FD (ByFD), or the one serving socket with the local address
// Network and Address, or both, in which case descriptor FD must have that
// address. The zero value selects nothing.
type SocketSelector struct {
	// ByFD selects the process's descriptor FD, which must be a socket of
	// any kind. Descriptor 0 is a valid choice: inetd-style servers get
	// their socket as standard input.
	ByFD bool
	FD   int

	// Network is tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixpacket or
	// unixgram, as net.Listen and net.ListenPacket name them, and Address
	// the local address as the kernel reports it (getsockname(2)). For the
	// IP networks it is HOST:PORT, where an empty HOST stands for any
	// address (":8080" is whatever serves port 8080) and HOST is otherwise
	// an IP address (0.0.0.0 and [::] are the wildcard addresses, not
	// "any"); for the unix networks a path, exactly as the process bound
	// it, or @name for an abstract socket. A stream socket (tcp, unix,
	// unixpacket) must be listening; the accepted connections that share
	// its address never match. A datagram socket (udp, unixgram) must be
	// bound to the address.
	Network, Address string
}

// ProcessSocket describes a socket found in another process, as the kernel
// reports it.
type ProcessSocket struct {
	Process string // "process 123 (name)", for messages
	PID     int
	FD      int // its descriptor number in the process

	// Network, Address and Listening are as in Entry.
	Network   string
	Address   string
	Listening bool
}

// String describes the socket: "fd 3 of process 123 (python3): tcp
// 127.0.0.1:8080, listening".
func (s ProcessSocket) String() string {
	return fmt.Sprintf("fd %d of %s: %s", s.FD, s.Process, s.describe())
}

func (s ProcessSocket) describe() string {
	d := s.Network
	if s.Address != "" {
		d += " " + s.Address
	}
	if s.Listening {
		d += ", listening"
	}
	return d
}

// Validate checks the selector without looking at any process: that it
// selects something, and that Network and Address are well formed.
func (sel SocketSelector) Validate() error {
	_, err := sel.matcher()
	return err
}

// CopySocket copies the socket sel selects out of the running process pid
// with pidfd_open(2) and pidfd_getfd(2), and returns the copy with what the
// kernel reports about it. The copy is the same socket (a dup across
// processes: the same open file description, flags included), so the
// process keeps serving on it undisturbed, and the socket outlives the
// process for as long as the copy is open. CopySocket needs ptrace attach
// rights over the process (see ErrPtraceDenied).
//
// The caller owns the returned file and must close it. Use it through
// SyscallConn, net.FileListener or Client.Store, never its Fd method: Fd
// makes the descriptor blocking, and O_NONBLOCK belongs to the open file
// description that the process shares. Every other
// descriptor CopySocket copies while it looks for the socket is closed
// before it returns, and on error nothing is left open.
//
// To select by address it copies each socket of the process (listed in
// /proc/PID/fd), asks the kernel about it (SO_DOMAIN, SO_TYPE, SO_PROTOCOL,
// SO_ACCEPTCONN, getsockname(2)) and closes it unless it matches. No match
// fails with ErrNoMatch, which lists the sockets the process does serve;
// several matches fail with ErrAmbiguous, which lists their descriptors.
// The same socket open at several descriptors is one match.
func CopySocket(pid int, sel SocketSelector) (*os.File, ProcessSocket, error) {
	m, err := sel.matcher()
	if err != nil {
		return nil, ProcessSocket{}, fmt.Errorf("process %d: %w", pid, err)
	}
	p, err := procfd.Open(pid)
	if err != nil {
		return nil, ProcessSocket{}, err
	}
	defer p.Close()
	var (
		fd *sockfd.FD
		s  ProcessSocket
	)
	if sel.ByFD {
		fd, s, err = copyByFD(p, sel, m)
	} else {
		fd, s, err = copyByAddress(p, sel, m)
	}
	if err != nil {
		return nil, ProcessSocket{}, err
	}
	return fd.File(fmt.Sprintf("fdholder:pid %d fd %d", pid, s.FD)), s, nil
}

// Adopt copies the socket sel selects out of process pid (as CopySocket
// does) and stores it under name with opts (as Store does), with this
// client's credentials. It returns the entry as the holder now holds it and
// the socket it adopted. This process keeps no copy; the process pid keeps
// its own, and serves on as before. On any error nothing is stored and
// nothing is left open.
func (c *Client) Adopt(ctx context.Context, name string, pid int, sel SocketSelector, opts StoreOptions) (Entry, ProcessSocket, error) {
	if err := ValidateName(name); err != nil {
		return Entry{}, ProcessSocket{}, fmt.Errorf("adopt %q: %w", name, err)
	}
	f, s, err := CopySocket(pid, sel)
	if err != nil {
		return Entry{}, ProcessSocket{}, fmt.Errorf("adopt %q: %w", name, err)
	}
	defer f.Close()
	e, err := c.Store(ctx, name, f, opts)
	if err != nil {
		return Entry{}, ProcessSocket{}, err
	}
	return e, s, nil
}

// copyByFD copies descriptor sel.FD and checks it is a socket, and one that
// m matches when an address was given too.
func copyByFD(p *procfd.Process, sel SocketSelector, m *matcher) (_ *sockfd.FD, _ ProcessSocket, err error) {
	fd, err := p.Copy(sel.FD)
	if err != nil {
		if errors.Is(err, unix.EBADF) {
			err = fmt.Errorf("%w: %w", ErrNoMatch, err)
		}
		return nil, ProcessSocket{}, err
	}
	defer func() {
		if err != nil {
			fd.Close()
		}
	}()
	info, err := sockfd.Inspect(fd)
	if err != nil {
		if errors.Is(err, ErrNotSocket) { // sockfd's and the holder's are one
			return nil, ProcessSocket{}, fmt.Errorf("%v: descriptor %d is %w", p, sel.FD, err)
		}
		return nil, ProcessSocket{}, fmt.Errorf("%v: descriptor %d: %w", p, sel.FD, err)
	}
	s := processSocket(p.String(), p.PID, sel.FD, info)
	if m != nil && !m.match(info) {
		return nil, ProcessSocket{}, fmt.Errorf("%w: descriptor %d of %v is %s, not a %s socket of %s", ErrNoMatch, sel.FD, p, s.describe(), sel.Network, sel.Address)
	}
	return fd, s, nil
}

// copyByAddress copies the process's sockets one at a time and keeps the
// one m matches. It holds copies of the matches only, and of none once it
// returns an error.
func copyByAddress(p *procfd.Process, sel SocketSelector, m *matcher) (_ *sockfd.FD, _ ProcessSocket, err error) {
	socks, err := p.Sockets()
	if err != nil {
		return nil, ProcessSocket{}, err
	}
	type found struct {
		fd *sockfd.FD
		s  ProcessSocket
	}
	var matches []found
	var serving []ProcessSocket
	defer func() {
		if err != nil {
			for _, f := range matches {
				f.fd.Close()
			}
		}
	}()
	seen := make(map[uint64]bool, len(socks))
	process := p.String() // reads /proc/PID/comm: once, not per socket
	for _, ps := range socks {
		if seen[ps.Inode] {
			continue
		}
		seen[ps.Inode] = true
		fd, err := p.Copy(ps.FD)
		if errors.Is(err, unix.EBADF) {
			continue // closed since /proc/PID/fd was read
		}
		if err != nil {
			return nil, ProcessSocket{}, err
		}
		info, err := sockfd.Inspect(fd)
		if err != nil {
			// Replaced by something else than a socket since the listing,
			// say: no candidate.
			fd.Close()
			continue
		}
		s := processSocket(process, p.PID, ps.FD, info)
		if serves(info) {
			serving = append(serving, s)
		}
		if !m.match(info) {
			fd.Close()
			continue
		}
		matches = append(matches, found{fd, s})
	}
	want := sel.Network + ":" + sel.Address
	switch len(matches) {
	case 0:
		return nil, ProcessSocket{}, fmt.Errorf("%w: %v has no socket serving %s; %s", ErrNoMatch, p, want, listSockets(serving))
	case 1:
		return matches[0].fd, matches[0].s, nil
	}
	var fds []string
	for _, f := range matches {
		fds = append(fds, fmt.Sprintf("fd %d (%s)", f.s.FD, f.s.describe()))
	}
	return nil, ProcessSocket{}, fmt.Errorf("%w: %d sockets of %v are %s: %s; select one by descriptor number",
		ErrAmbiguous, len(matches), p, want, strings.Join(fds, ", "))
}

func processSocket(process string, pid, fd int, info sockfd.Info) ProcessSocket {
	return ProcessSocket{Process: process, PID: pid, FD: fd,
		Network: info.Network, Address: info.Address, Listening: info.Listening}
}

// listSockets words what a process serves, for an error.
func listSockets(ss []ProcessSocket) string {
	if len(ss) == 0 {
		return "it has no listening or bound socket of its own"
	}
	var b strings.Builder
	b.WriteString("it has ")
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (fd %d)", s.describe(), s.FD)
	}
	return b.String()
}

// serves reports whether a socket is one a server receives on: a listening
// stream socket, or a datagram socket bound to an address.
func serves(info sockfd.Info) bool {
	switch info.Network {
	case "tcp", "tcp6", "unix", "unixpacket":
		return info.Listening
	case "unixgram":
		return info.Address != ""
	case "udp", "udp6":
		ap, err := netip.ParseAddrPort(info.Address)
		return err == nil && ap.Port() != 0
	}
	return false
}

// matcher is a parsed address selector; nil matches any socket.
type matcher struct {
	network string
	unix    string     // the unix networks: the address
	ip      netip.Addr // the IP networks: the address, or invalid for any
	port    uint16
}

func (sel SocketSelector) matcher() (*matcher, error) {
	if sel.ByFD && sel.FD < 0 {
		return nil, fmt.Errorf("negative descriptor %d", sel.FD)
	}
	if sel.Network == "" {
		if !sel.ByFD {
			return nil, errors.New("select a socket by descriptor number or by network and address")
		}
		if sel.Address != "" {
			return nil, fmt.Errorf("address %q without a network", sel.Address)
		}
		return nil, nil
	}
	m := &matcher{network: sel.Network}
	switch sel.Network {
	case "unix", "unixpacket", "unixgram":
		if sel.Address == "" {
			return nil, fmt.Errorf("%s wants a socket path or @name", sel.Network)
		}
		m.unix = sel.Address
		return m, nil
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("unknown network %q (want tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixpacket or unixgram)", sel.Network)
	}
	host, port, err := net.SplitHostPort(sel.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %s wants HOST:PORT, such as 127.0.0.1:8080, [::1]:8080 or :8080", sel.Address, sel.Network)
	}
	if host != "" {
		if m.ip, err = netip.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("address %q: %q is not an IP address (leave it empty for any address)", sel.Address, host)
		}
		m.ip = m.ip.Unmap()
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		p, lerr := net.LookupPort(sel.Network, port)
		if lerr != nil {
			return nil, fmt.Errorf("address %q: bad port %q", sel.Address, port)
		}
		n = uint64(p)
	}
	if n == 0 {
		return nil, fmt.Errorf("address %q: port 0: a serving socket has a port of its own", sel.Address)
	}
	m.port = uint16(n)
	return m, nil
}

func (m *matcher) match(info sockfd.Info) bool {
	if m == nil {
		return true
	}
	if !NetworkMatches(m.network, info.Network) {
		return false
	}
	switch info.Network {
	case "tcp", "tcp6", "unix", "unixpacket":
		if !info.Listening {
			return false
		}
	}
	if m.unix != "" {
		return info.Address == m.unix
	}
	ap, err := netip.ParseAddrPort(info.Address)
	if err != nil || ap.Port() != m.port {
		return false
	}
	return !m.ip.IsValid() || ap.Addr().Unmap() == m.ip
}
