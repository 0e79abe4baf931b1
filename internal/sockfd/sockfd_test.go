package sockfd

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/testutil"
)

// dupOf returns an FD owning a duplicate of sc's descriptor.
func dupOf(t testing.TB, sc syscall.Conn) *FD {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var derr error
	if err := rc.Control(func(fd uintptr) { n, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		t.Fatal(err)
	}
	if derr != nil {
		t.Fatal(derr)
	}
	f := New(n)
	t.Cleanup(func() { f.Close() })
	return f
}

// rawSocket returns an FD owning a new socket made with socket(2).
func rawSocket(t testing.TB, domain, typ, proto int) *FD {
	t.Helper()
	n, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Skipf("socket(%d, %d, %d): %v", domain, typ, proto, err)
	}
	f := New(n)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestInspect(t *testing.T) {
	testutil.CheckLeaks(t)
	dir := testutil.ShortDir(t)
	open := func(t *testing.T, network, address string) (syscall.Conn, string) {
		t.Helper()
		var c any
		var err error
		switch network {
		case "udp", "udp4", "udp6", "unixgram":
			c, err = net.ListenPacket(network, address)
		default:
			c, err = net.Listen(network, address)
		}
		if err != nil {
			t.Skipf("%s %s: %v", network, address, err)
		}
		t.Cleanup(func() { c.(interface{ Close() error }).Close() })
		var addr string
		switch c := c.(type) {
		case net.Listener:
			addr = c.Addr().String()
		case net.PacketConn:
			addr = c.LocalAddr().String()
		}
		return c.(syscall.Conn), addr
	}
	tests := []struct {
		name, network, address string
		want                   string
		listening              bool
	}{
		{"tcp4", "tcp4", "127.0.0.1:0", "tcp", true},
		{"tcp6", "tcp6", "[::1]:0", "tcp6", true},
		{"dual stack is tcp6", "tcp", ":0", "tcp6", true},
		{"udp4", "udp4", "127.0.0.1:0", "udp", false},
		{"udp6", "udp6", "[::1]:0", "udp6", false},
		{"unix", "unix", filepath.Join(dir, "s"), "unix", true},
		{"unixpacket", "unixpacket", filepath.Join(dir, "p"), "unixpacket", true},
		{"unixgram", "unixgram", filepath.Join(dir, "g"), "unixgram", false},
		{"abstract", "unix", "@fdholder-sockfd-test", "unix", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, addr := open(t, tt.network, tt.address)
			info, err := Inspect(dupOf(t, c))
			if err != nil {
				t.Fatal(err)
			}
			if info.Network != tt.want || info.Listening != tt.listening || info.Address != addr {
				t.Errorf("Inspect = %+v, want network %s, listening %v, address %s", info, tt.want, tt.listening, addr)
			}
		})
	}
	t.Run("unbound unix socket", func(t *testing.T) {
		info, err := Inspect(rawSocket(t, unix.AF_UNIX, unix.SOCK_STREAM, 0))
		if err != nil || info.Network != "unix" || info.Address != "" || info.Listening {
			t.Errorf("Inspect = %+v, %v", info, err)
		}
	})
	t.Run("netlink", func(t *testing.T) {
		f := rawSocket(t, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
		if err := unix.Bind(f.Sysfd(), &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
			t.Fatal(err)
		}
		info, err := Inspect(f)
		if err != nil || info.Network != "netlink/raw" || !strings.HasPrefix(info.Address, "portid ") || !strings.HasSuffix(info.Address, " groups 0x1") {
			t.Errorf("Inspect = %+v, %v; want netlink/raw at portid N groups 0x1", info, err)
		}
	})
	t.Run("abstract name with an embedded NUL", func(t *testing.T) {
		f := rawSocket(t, unix.AF_UNIX, unix.SOCK_STREAM, 0)
		// Go's net package cannot bind such a name; bind(2) can.
		if err := unix.Bind(f.Sysfd(), &unix.SockaddrUnix{Name: "\x00fdh-\x00-tail"}); err != nil {
			t.Fatal(err)
		}
		info, err := Inspect(f)
		if want := `@fdh-\x00-tail`; err != nil || info.Address != want {
			t.Errorf("Inspect = %+v, %v; want address %s", info, err, want)
		}
	})
}

func htons(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}

func TestFormatSockaddr(t *testing.T) {
	tests := []struct {
		name string
		sa   unix.Sockaddr
		want string
	}{
		{"netlink", &unix.SockaddrNetlink{Pid: 42, Groups: 5}, "portid 42 groups 0x5"},
		// sll_protocol is in network byte order, as getsockname(2) leaves it.
		{"packet on every interface", &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)}, "any protocol 0x0003"},
		{"packet on an unknown interface", &unix.SockaddrLinklayer{Ifindex: 1 << 30, Protocol: htons(unix.ETH_P_IP)}, "ifindex 1073741824 protocol 0x0800"},
		{"vsock", &unix.SockaddrVM{CID: 3, Port: 1024}, "3:1024"},
		{"inet", &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 80}, "127.0.0.1:80"},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatSockaddr(tt.sa); got != tt.want {
				t.Errorf("FormatSockaddr(%+v) = %q, want %q", tt.sa, got, tt.want)
			}
		})
	}
}

func TestInspectNotSocket(t *testing.T) {
	testutil.CheckLeaks(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[1])
	pipe := New(p[0])
	defer pipe.Close()
	if _, err := Inspect(pipe); !errors.Is(err, ErrNotSocket) || err.Error() != "not a socket (a pipe)" {
		t.Errorf("Inspect(pipe) = %v, want ErrNotSocket naming a pipe", err)
	}
	n, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	null := New(n)
	defer null.Close()
	if _, err := Inspect(null); !errors.Is(err, ErrNotSocket) {
		t.Errorf("Inspect(/dev/null) = %v, want ErrNotSocket", err)
	}
	// An O_PATH descriptor of a socket file: fstat says socket, the socket
	// calls say ENOTSOCK.
	path := filepath.Join(testutil.ShortDir(t), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	n, err = unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	opath := New(n)
	defer opath.Close()
	if _, err := Inspect(opath); !errors.Is(err, ErrNotSocket) || !strings.Contains(err.Error(), "O_PATH") {
		t.Errorf("Inspect(O_PATH of a socket file) = %v, want ErrNotSocket naming O_PATH", err)
	}
}

func TestTCPQueue(t *testing.T) {
	testutil.CheckLeaks(t)
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd := dupOf(t, ln)
	for i := range 3 {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The handshake completes in the kernel: the connection waits in
		// the accept queue until someone accepts it.
		if q, b, err := TCPQueue(fd); err != nil || q != uint32(i+1) || b == 0 {
			t.Fatalf("after %d connects: queued %d, backlog %d, %v", i+1, q, b, err)
		}
	}
}

func TestFDOwnership(t *testing.T) {
	testutil.CheckLeaks(t)
	f := rawSocket(t, unix.AF_UNIX, unix.SOCK_STREAM, 0)
	d, err := f.Dup()
	if err != nil {
		t.Fatal(err)
	}
	if d.Sysfd() == f.Sysfd() {
		t.Fatal("Dup returned the same descriptor")
	}
	file := d.File("dup")
	if d.Sysfd() != -1 || d.File("again") != nil {
		t.Error("File did not hand the descriptor over")
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close after File: %v", err)
	}
	file.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestZeroFD: a declared FD, like New(-1), owns nothing: closing it
// leaves descriptor 0 (standard input) open, and Reset fills it.
func TestZeroFD(t *testing.T) {
	testutil.CheckLeaks(t)
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Skipf("descriptor 0 is not open here: %v", err)
	}
	var z FD
	for _, f := range []*FD{&z, New(-1)} {
		if n := f.Sysfd(); n != -1 {
			t.Errorf("Sysfd() = %d, want -1", n)
		}
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if file := f.File("none"); file != nil {
			t.Errorf("File of an empty FD: %v", file.Name())
		}
	}
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Fatalf("descriptor 0 after closing an empty FD: %v", err)
	}
	n, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !z.Reset(n) || z.Sysfd() != n {
		unix.Close(n)
		t.Fatalf("Reset(%d) did not fill the zero FD (Sysfd %d)", n, z.Sysfd())
	}
	if z.Reset(0) || z.Sysfd() != n {
		t.Error("Reset of an FD that owns a descriptor took another")
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseAll(t *testing.T) {
	testutil.CheckLeaks(t)
	var nilFD *FD
	if err := nilFD.Close(); err != nil {
		t.Errorf("Close of a nil *FD: %v", err)
	}
	fds := []*FD{
		rawSocket(t, unix.AF_UNIX, unix.SOCK_STREAM, 0),
		nil,
		rawSocket(t, unix.AF_UNIX, unix.SOCK_DGRAM, 0),
	}
	CloseAll(fds)
	for i, f := range fds {
		if f != nil && f.Sysfd() != -1 {
			t.Errorf("fds[%d] is still open after CloseAll", i)
		}
	}
}

// TestDescribeType: a file is described in the same words whether it was
// found by path (Lstat) or by descriptor (Inspect's fstat).
func TestDescribeType(t *testing.T) {
	dir := testutil.ShortDir(t)
	tests := []struct {
		name string
		make func(t testing.TB, path string)
		want string
	}{
		{"regular file", func(t testing.TB, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "a regular file"},
		{"directory", func(t testing.TB, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "a directory"},
		{"named pipe", func(t testing.TB, path string) {
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "a pipe"},
		{"character device", func(t testing.TB, path string) {
			if err := os.Symlink("/dev/null", path); err != nil {
				t.Fatal(err)
			}
		}, "a character device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			tt.make(t, path)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := DescribeType(fi.Mode()); got != tt.want {
				t.Errorf("DescribeType(Stat) = %q, want %q", got, tt.want)
			}
			// O_NONBLOCK: opening a FIFO for reading does not wait for a writer (fifo(7)).
			n, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			fd := New(n)
			defer fd.Close()
			_, err = Inspect(fd)
			if want := "not a socket (" + tt.want + ")"; !errors.Is(err, ErrNotSocket) || err.Error() != want {
				t.Errorf("Inspect = %v, want %q", err, want)
			}
		})
	}
	if got := DescribeType(os.ModeSymlink); got != "a symbolic link" {
		t.Errorf("DescribeType(ModeSymlink) = %q", got)
	}
}
