package fdholder_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/testutil"
)

func TestCopySocket(t *testing.T) {
	testutil.CheckLeaks(t)
	sockPath := filepath.Join(testutil.ShortDir(t), "app.sock")
	p := testutil.StartSocketProcess(t, "tcp", "tcp6", "dup", "accepted", "udp", "unix="+sockPath)
	t.Cleanup(p.KeepsFDs(t))
	tcp := p.Sockets["tcp"][0]
	dup := p.Sockets["dup"]
	accepted := p.Sockets["accepted"]
	udp := p.Sockets["udp"][0]
	tcp6 := p.Sockets["tcp6"][0]
	unixLn := p.Sockets["unix="+sockPath][0]
	_, tcpPort, _ := net.SplitHostPort(tcp.Address)

	tests := []struct {
		name        string
		sel         fdholder.SocketSelector
		wantFD      int
		wantNetwork string
		wantAddress string
		listening   bool
	}{
		{"by address", fdholder.SocketSelector{Network: "tcp", Address: tcp.Address}, tcp.FD, "tcp", tcp.Address, true},
		{"tcp4", fdholder.SocketSelector{Network: "tcp4", Address: tcp.Address}, tcp.FD, "tcp", tcp.Address, true},
		{"any host", fdholder.SocketSelector{Network: "tcp", Address: ":" + tcpPort}, tcp.FD, "tcp", tcp.Address, true},
		{"by fd", fdholder.SocketSelector{ByFD: true, FD: tcp.FD}, tcp.FD, "tcp", tcp.Address, true},
		{"tcp6", fdholder.SocketSelector{Network: "tcp6", Address: tcp6.Address}, tcp6.FD, "tcp6", tcp6.Address, true},
		// tcp is either family, as net.Listen has it.
		{"tcp on ::1", fdholder.SocketSelector{Network: "tcp", Address: tcp6.Address}, tcp6.FD, "tcp6", tcp6.Address, true},
		{"by fd and address", fdholder.SocketSelector{ByFD: true, FD: tcp.FD, Network: "tcp", Address: tcp.Address}, tcp.FD, "tcp", tcp.Address, true},
		// One socket at two descriptors is one match, reported at the first.
		{"dup", fdholder.SocketSelector{Network: "tcp", Address: dup[0].Address}, min(dup[0].FD, dup[1].FD), "tcp", dup[0].Address, true},
		// The accepted connection shares the listener's local address.
		{"not the accepted connection", fdholder.SocketSelector{Network: "tcp", Address: accepted[0].Address}, accepted[0].FD, "tcp", accepted[0].Address, true},
		{"an accepted connection by fd", fdholder.SocketSelector{ByFD: true, FD: accepted[1].FD}, accepted[1].FD, "tcp", accepted[0].Address, false},
		{"udp", fdholder.SocketSelector{Network: "udp", Address: udp.Address}, udp.FD, "udp", udp.Address, false},
		{"unix", fdholder.SocketSelector{Network: "unix", Address: sockPath}, unixLn.FD, "unix", sockPath, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "any host" && samePort(tcp6.Address, tcp.Address) {
				// Then both listeners are on the port: ambiguous.
				t.Skipf("the kernel gave ::1 and 127.0.0.1 the same port %s", tcpPort)
			}
			f, s, err := fdholder.CopySocket(p.PID, tt.sel)
			if err != nil {
				t.Fatalf("CopySocket(%d, %+v): %v", p.PID, tt.sel, err)
			}
			defer f.Close()
			if s.PID != p.PID || s.FD != tt.wantFD || s.Network != tt.wantNetwork || s.Address != tt.wantAddress || s.Listening != tt.listening {
				t.Errorf("CopySocket = %+v, want fd %d: %s %s, listening %v", s, tt.wantFD, tt.wantNetwork, tt.wantAddress, tt.listening)
			}
			if !strings.Contains(s.String(), fmt.Sprintf("fd %d of process %d (python3", tt.wantFD, p.PID)) {
				t.Errorf("String() = %q, want the descriptor and the process named", s)
			}
			if tt.listening && tt.wantNetwork != "unix" {
				// The copy is the process's very socket: a connection made
				// to its address is accepted on the copy (the process
				// itself accepts nothing).
				accepts(t, f, tt.wantAddress)
			}
		})
	}
}

func TestCopySocketRefuses(t *testing.T) {
	testutil.CheckLeaks(t)
	p := testutil.StartSocketProcess(t, "tcp", "reuseport", "udp", "pipe")
	t.Cleanup(p.KeepsFDs(t))
	tcp := p.Sockets["tcp"][0]
	pair := p.Sockets["reuseport"]
	udp := p.Sockets["udp"][0]
	pipe := p.Sockets["pipe"][0]
	// TCP and UDP ports are separate spaces: the kernel may give the UDP
	// socket the number of a TCP listener, and then a case that asks one
	// network on the other's address would match.
	shared := samePort(udp.Address, tcp.Address, pair[0].Address)

	tests := []struct {
		name    string
		pid     int
		sel     fdholder.SocketSelector
		wantErr error
		want    []string // in the message
	}{
		{"reuseport pair", p.PID, fdholder.SocketSelector{Network: "tcp", Address: pair[0].Address}, fdholder.ErrAmbiguous,
			[]string{fmt.Sprintf("fd %d (tcp %s, listening)", pair[0].FD, pair[0].Address), fmt.Sprintf("fd %d (tcp %s, listening)", pair[1].FD, pair[1].Address)}},
		// The process serves nothing on port 1 (its ports are ephemeral).
		{"no socket on the port", p.PID, fdholder.SocketSelector{Network: "tcp", Address: "127.0.0.1:1"}, fdholder.ErrNoMatch,
			[]string{fmt.Sprintf("tcp %s, listening (fd %d)", tcp.Address, tcp.FD), fmt.Sprintf("udp %s (fd %d)", udp.Address, udp.FD)}},
		{"tcp6 asked, tcp held", p.PID, fdholder.SocketSelector{Network: "tcp6", Address: tcp.Address}, fdholder.ErrNoMatch, nil},
		{"udp asked, tcp held", p.PID, fdholder.SocketSelector{Network: "udp", Address: tcp.Address}, fdholder.ErrNoMatch, nil},
		{"other host", p.PID, fdholder.SocketSelector{Network: "tcp", Address: "127.0.0.2:" + strings.Split(tcp.Address, ":")[1]}, fdholder.ErrNoMatch, nil},
		{"unix asked", p.PID, fdholder.SocketSelector{Network: "unix", Address: "/nonexistent.sock"}, fdholder.ErrNoMatch, nil},
		{"fd is a pipe", p.PID, fdholder.SocketSelector{ByFD: true, FD: pipe.FD}, fdholder.ErrNotSocket, []string{"a pipe"}},
		{"fd not open", p.PID, fdholder.SocketSelector{ByFD: true, FD: 999}, fdholder.ErrNoMatch, []string{"descriptor 999 is not open"}},
		{"fd of another address", p.PID, fdholder.SocketSelector{ByFD: true, FD: udp.FD, Network: "tcp", Address: tcp.Address}, fdholder.ErrNoMatch,
			[]string{"udp " + udp.Address}},
		{"no such process", testutil.NoPID(t), fdholder.SocketSelector{Network: "tcp", Address: tcp.Address}, fdholder.ErrNoProcess, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "udp asked, tcp held" && shared {
				t.Skipf("the kernel gave UDP %s the port of a TCP listener", udp.Address)
			}
			f, s, err := fdholder.CopySocket(tt.pid, tt.sel)
			if err == nil {
				f.Close()
				t.Fatalf("CopySocket(%d, %+v) = %+v, want an error", tt.pid, tt.sel, s)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q, want %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q, want it to say %q", err, w)
				}
			}
		})
	}
}

// samePort reports whether addr has the port of any of others.
func samePort(addr string, others ...string) bool {
	_, port, _ := net.SplitHostPort(addr)
	for _, o := range others {
		if _, p, _ := net.SplitHostPort(o); p == port {
			return true
		}
	}
	return false
}

func TestSocketSelectorValidate(t *testing.T) {
	tests := []struct {
		name string
		sel  fdholder.SocketSelector
		ok   bool
	}{
		{"empty", fdholder.SocketSelector{}, false},
		{"fd 0", fdholder.SocketSelector{ByFD: true}, true},
		{"negative fd", fdholder.SocketSelector{ByFD: true, FD: -1}, false},
		{"address without network", fdholder.SocketSelector{ByFD: true, Address: "127.0.0.1:80"}, false},
		{"tcp", fdholder.SocketSelector{Network: "tcp", Address: "127.0.0.1:80"}, true},
		{"tcp6", fdholder.SocketSelector{Network: "tcp6", Address: "[::1]:80"}, true},
		{"service name", fdholder.SocketSelector{Network: "tcp", Address: ":http"}, true},
		{"port 0", fdholder.SocketSelector{Network: "tcp", Address: "127.0.0.1:0"}, false},
		{"host name", fdholder.SocketSelector{Network: "tcp", Address: "localhost:80"}, false},
		{"no port", fdholder.SocketSelector{Network: "tcp", Address: "127.0.0.1"}, false},
		{"unix", fdholder.SocketSelector{Network: "unix", Address: "/run/a.sock"}, true},
		{"unix empty", fdholder.SocketSelector{Network: "unix"}, false},
		{"sctp", fdholder.SocketSelector{Network: "sctp", Address: ":80"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.sel.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate(%+v) = %v, want ok %v", tt.sel, err, tt.ok)
			}
		})
	}
}

// TestAdopt adopts a live process's listener, then lets the process die:
// the holder's copy keeps the socket, so a connection made afterwards is
// queued, and accepted through the holder.
func TestAdopt(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := dial(t, h.Path)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	p := testutil.StartSocketProcess(t, "tcp")
	tcp := p.Sockets["tcp"][0]
	e, s, err := c.Adopt(ctx, "web", p.PID, fdholder.SocketSelector{Network: "tcp", Address: tcp.Address}, fdholder.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "web" || e.Network != "tcp" || e.Address != tcp.Address || !e.Listening || s.FD != tcp.FD {
		t.Fatalf("Adopt = %+v, %+v; want web: tcp %s listening, from fd %d", e, s, tcp.Address, tcp.FD)
	}
	if e.OwnerUID != uint32(os.Getuid()) || e.OwnerPID != int32(os.Getpid()) {
		t.Errorf("owner %d/%d, want the adopter %d/%d", e.OwnerUID, e.OwnerPID, os.Getuid(), os.Getpid())
	}

	// The same name again: refused, nothing changed.
	if _, _, err := c.Adopt(ctx, "web", p.PID, fdholder.SocketSelector{ByFD: true, FD: tcp.FD}, fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrExists) {
		t.Errorf("adopt a held name: %v, want ErrExists", err)
	}
	// Errors store nothing.
	if _, _, err := c.Adopt(ctx, "other", p.PID, fdholder.SocketSelector{Network: "udp", Address: tcp.Address}, fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrNoMatch) {
		t.Errorf("adopt a missing socket: %v, want ErrNoMatch", err)
	}
	if _, _, err := c.Adopt(ctx, "bad name!", p.PID, fdholder.SocketSelector{ByFD: true, FD: tcp.FD}, fdholder.StoreOptions{}); !errors.Is(err, fdholder.ErrInvalidName) {
		t.Errorf("adopt under an invalid name: %v, want ErrInvalidName", err)
	}
	entries, err := c.List(ctx)
	if err != nil || len(entries) != 1 {
		t.Fatalf("list: %v, %v; want web alone", entries, err)
	}

	// The process exits: the socket lives on in the holder.
	p.Stop(t)
	conn, err := net.DialTimeout("tcp", tcp.Address, 5*time.Second)
	if err != nil {
		t.Fatalf("connect after the process exited: %v, want the held socket to queue it", err)
	}
	defer conn.Close()
	f, _, err := c.Get(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	accepts(t, f, tcp.Address)
}
