package sockfd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FD owns one open descriptor, or nothing once closed or released;
// New(-1) and the zero value own nothing from the start (Reset can then
// fill them). An FD must not be copied after first use.
type FD struct {
	n atomic.Int64 // the descriptor plus one: 0 (the zero value) owns nothing
}

// New returns an FD that owns descriptor n. The raw number must not be used
// elsewhere afterwards.
func New(n int) *FD {
	f := &FD{}
	if n >= 0 {
		f.n.Store(int64(n) + 1)
	}
	return f
}

// Sysfd returns the descriptor number for a system call. The caller must
// ensure that f is not closed while the call runs.
func (f *FD) Sysfd() int { return int(f.n.Load()) - 1 }

// Close closes the descriptor. Closing an FD again, a released one, or a nil
// *FD does nothing and returns nil.
func (f *FD) Close() error {
	if f == nil {
		return nil
	}
	n := f.n.Swap(0) - 1
	if n < 0 {
		return nil
	}
	return os.NewSyscallError("close", unix.Close(int(n)))
}

// CloseAll closes every FD of fds (nil ones included, which do nothing).
func CloseAll(fds []*FD) {
	for _, f := range fds {
		f.Close()
	}
}

// File hands the descriptor over to an *os.File without duplicating it; f no
// longer owns it and the caller must close the returned file.
func (f *FD) File(name string) *os.File {
	n := f.n.Swap(0) - 1
	if n < 0 {
		return nil
	}
	return os.NewFile(uintptr(n), name)
}

// Dup duplicates the descriptor (F_DUPFD_CLOEXEC) into a new FD that the
// caller must close.
func (f *FD) Dup() (*FD, error) {
	n, err := unix.FcntlInt(uintptr(f.Sysfd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	return New(n), nil
}

// DupConn duplicates the descriptor of sc (a *net.TCPListener, an
// *os.File, ...) into a new FD that the caller must close; sc stays the
// caller's. The duplicate is made inside sc's SyscallConn().Control with
// F_DUPFD_CLOEXEC, never through Fd(), which would put the open file
// description, shared with every other holder of it, in blocking mode.
func DupConn(sc syscall.Conn) (*FD, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		n, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", derr)
	}
	return New(n), nil
}

// ErrNotSocket is the one sentinel for "not a socket": Inspect wraps it for a
// descriptor, ctlsock for a path, and proto maps it to CodeNotSocket.
var ErrNotSocket = errors.New("not a socket")

// Info is what the kernel reports about a socket.
type Info struct {
	// Network is tcp, tcp6, udp, udp6, unix, unixgram or unixpacket, named
	// as Go's net package names them, by address family and socket type. A
	// socket of another kind is described as family/type, e.g. "netlink/dgram".
	Network   string
	Address   string // the local address, see FormatSockaddr
	Listening bool   // SO_ACCEPTCONN
}

// Inspect returns what the kernel reports about the socket f. It fails with
// ErrNotSocket if n is not a socket.
func Inspect(f *FD) (Info, error) {
	n := f.Sysfd()
	var st unix.Stat_t
	if err := unix.Fstat(n, &st); err != nil {
		return Info{}, os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return Info{}, fmt.Errorf("%w (%s)", ErrNotSocket, DescribeType(modeType(st.Mode)))
	}
	domain, err := unix.GetsockoptInt(n, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err == unix.EBADF {
		// fstat(2) reports the file's type, but an O_PATH descriptor of a
		// socket file is no socket: open(2) says such a descriptor serves
		// only a few calls, and the others fail with EBADF.
		if fl, ferr := unix.FcntlInt(uintptr(n), unix.F_GETFL, 0); ferr == nil && fl&unix.O_PATH != 0 {
			return Info{}, fmt.Errorf("%w (an O_PATH descriptor of a socket file)", ErrNotSocket)
		}
	}
	if err != nil {
		return Info{}, os.NewSyscallError("getsockopt SO_DOMAIN", err)
	}
	typ, err := unix.GetsockoptInt(n, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return Info{}, os.NewSyscallError("getsockopt SO_TYPE", err)
	}
	proto, err := unix.GetsockoptInt(n, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return Info{}, os.NewSyscallError("getsockopt SO_PROTOCOL", err)
	}
	acc, err := unix.GetsockoptInt(n, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return Info{}, os.NewSyscallError("getsockopt SO_ACCEPTCONN", err)
	}
	info := Info{Network: networkName(domain, typ, proto), Listening: acc != 0}
	if domain == unix.AF_UNIX {
		// x/sys's Getsockname cuts an abstract name at its first NUL;
		// the kernel's name is every byte up to the address length.
		info.Address, err = unixName(n)
		if err != nil {
			return Info{}, err
		}
		return info, nil
	}
	sa, err := unix.Getsockname(n)
	if err != nil {
		return Info{}, os.NewSyscallError("getsockname", err)
	}
	info.Address = FormatSockaddr(sa)
	return info, nil
}

func networkName(domain, typ, proto int) string {
	// Go listens with Multipath TCP by default since Go 1.24 where the
	// kernel has it; an MPTCP socket serves plain TCP clients, so it is tcp.
	if proto == unix.IPPROTO_MPTCP {
		proto = unix.IPPROTO_TCP
	}
	switch {
	case domain == unix.AF_INET && typ == unix.SOCK_STREAM && proto == unix.IPPROTO_TCP:
		return "tcp"
	case domain == unix.AF_INET6 && typ == unix.SOCK_STREAM && proto == unix.IPPROTO_TCP:
		return "tcp6"
	case domain == unix.AF_INET && typ == unix.SOCK_DGRAM && proto == unix.IPPROTO_UDP:
		return "udp"
	case domain == unix.AF_INET6 && typ == unix.SOCK_DGRAM && proto == unix.IPPROTO_UDP:
		return "udp6"
	case domain == unix.AF_UNIX && typ == unix.SOCK_STREAM:
		return "unix"
	case domain == unix.AF_UNIX && typ == unix.SOCK_DGRAM:
		return "unixgram"
	case domain == unix.AF_UNIX && typ == unix.SOCK_SEQPACKET:
		return "unixpacket"
	}
	return familyName(domain) + "/" + typeName(typ)
}

func familyName(d int) string {
	switch d {
	case unix.AF_INET:
		return "inet"
	case unix.AF_INET6:
		return "inet6"
	case unix.AF_UNIX:
		return "unix"
	case unix.AF_NETLINK:
		return "netlink"
	case unix.AF_PACKET:
		return "packet"
	case unix.AF_VSOCK:
		return "vsock"
	}
	return fmt.Sprintf("family%d", d)
}

func typeName(t int) string {
	switch t {
	case unix.SOCK_STREAM:
		return "stream"
	case unix.SOCK_DGRAM:
		return "dgram"
	case unix.SOCK_SEQPACKET:
		return "seqpacket"
	case unix.SOCK_RAW:
		return "raw"
	}
	return fmt.Sprintf("type%d", t)
}

// DescribeType names the type of a file in the words of an error message:
// "a pipe", "a regular file", "a directory". It is the one describer of file
// types, for a path (from Lstat) and a descriptor (from Inspect's fstat)
// alike.
func DescribeType(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "a regular file"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeNamedPipe != 0:
		return "a pipe"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	default:
		return "file type " + t.String()
	}
}

// modeType maps the S_IFMT bits of a stat(2) mode (inode(7)) to the
// fs.FileMode type bits, as os.Stat does.
func modeType(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	case unix.S_IFREG:
		return 0
	}
	return fs.ModeIrregular
}

// FormatSockaddr formats a local socket address the way Go's net package
// prints addresses: 127.0.0.1:80, [::1]:80, /path, @abstract. An unbound
// Unix socket formats as "".
func FormatSockaddr(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr)
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				ip = ip.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(ip, uint16(a.Port)).String()
	case *unix.SockaddrUnix:
		// x/sys/unix already rewrites an abstract name's leading NUL as '@',
		// and so reports an unbound socket (no path at all) as "@".
		if a.Name == "@" {
			return ""
		}
		if len(a.Name) > 0 && a.Name[0] == 0 {
			return "@" + a.Name[1:]
		}
		return a.Name
	case *unix.SockaddrNetlink:
		// netlink(7): the port id (0 for the kernel) and the multicast groups.
		return fmt.Sprintf("portid %d groups %#x", a.Pid, a.Groups)
	case *unix.SockaddrLinklayer:
		// packet(7): the interface (0: every interface) and the protocol,
		// which sll_protocol carries in network byte order.
		ifname := "any"
		if a.Ifindex != 0 {
			ifname = fmt.Sprintf("ifindex %d", a.Ifindex)
			if ifi, err := net.InterfaceByIndex(a.Ifindex); err == nil {
				ifname = ifi.Name
			}
		}
		return fmt.Sprintf("%s protocol %#04x", ifname, binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, a.Protocol)))
	case *unix.SockaddrVM:
		// vsock(7): context id and port, as ss(8) prints them.
		return fmt.Sprintf("%d:%d", a.CID, a.Port)
	case nil:
		return ""
	}
	return fmt.Sprintf("%T", sa)
}

// unixName returns the local name of the AF_UNIX socket n as
// FormatSockaddr prints it, from getsockname(2)'s address length: an
// abstract name (unix(7): sun_path[0] is NUL) is every byte after the
// first, embedded NULs included, each shown as \x00.
func unixName(n int) (string, error) {
	var rsa unix.RawSockaddrUnix
	l := uint32(unix.SizeofSockaddrUnix)
	_, _, errno := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(n), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
	if errno != 0 {
		return "", os.NewSyscallError("getsockname", errno)
	}
	size := int(l) - int(unsafe.Offsetof(rsa.Path))
	if size <= 0 {
		return "", nil // unbound
	}
	path := unsafe.Slice((*byte)(unsafe.Pointer(&rsa.Path[0])), min(size, len(rsa.Path)))
	if path[0] != 0 {
		// A pathname socket: the name ends at its NUL, if any.
		if i := bytes.IndexByte(path, 0); i >= 0 {
			path = path[:i]
		}
		return string(path), nil
	}
	return "@" + strings.ReplaceAll(string(path[1:]), "\x00", `\x00`), nil
}

// TCPQueue returns a TCP listener's accept queue: the connections waiting to
// be accepted and the queue's limit. On a listening socket the kernel
// reports these as tcpi_unacked and tcpi_sacked of TCP_INFO (tcp_get_info in
// net/ipv4/tcp.c).
func TCPQueue(f *FD) (queued, backlog uint32, err error) {
	ti, err := unix.GetsockoptTCPInfo(f.Sysfd(), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, 0, os.NewSyscallError("getsockopt TCP_INFO", err)
	}
	return ti.Unacked, ti.Sacked, nil
}

// Reset makes f own descriptor n if f owns nothing (it was closed or
// released), and reports whether it did; an f that owns a descriptor is
// left alone. It lets a caller that alone refers to f reuse it instead of
// allocating another.
func (f *FD) Reset(n int) bool { return n >= 0 && f.n.CompareAndSwap(0, int64(n)+1) }
