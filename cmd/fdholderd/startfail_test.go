package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/fdstore"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
	"github.com/fdholder/fdholder/internal/testutil"
)

// TestStartFailureClosesPassed starts a holder in this process, as an
// upgraded image starts, with a hand-off that passes a control listener
// and a held socket, and a --metrics-address that cannot be bound, so that
// start fails after it took the passed descriptors and before recovery took
// them over. Every descriptor the holder received or opened (the hand-off's,
// the file descriptor store's notification socket) must be closed by the
// time run returns: CheckLeaks compares /proc/self/fd before and after.
func TestStartFailureClosesPassed(t *testing.T) {
	tests := []struct {
		name   string
		notify bool // a service manager listens on NOTIFY_SOCKET: the store mirror
	}{
		{name: "an upgrade's hand-off"},
		{name: "an upgrade's hand-off under systemd", notify: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			dir := testutil.ShortDir(t)
			t.Setenv("NOTIFY_SOCKET", "")
			if tt.notify {
				path := filepath.Join(dir, "notify")
				mgr, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { mgr.Close() })
				t.Setenv("NOTIFY_SOCKET", path)
			}
			busy := testutil.ListenTCP(t) // the metrics address, taken
			handOff(t, filepath.Join(dir, "ctl.sock"))

			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			code := run(ctx, []string{"--socket", filepath.Join(dir, "h.sock"), "--metrics-address", busy.Addr().String()}, &bytes.Buffer{}, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), "fdholderd: metrics:") {
				t.Fatalf("exit %d, want 1 with the metrics error; stderr:\n%s", code, stderr.String())
			}
		})
	}
}

// handOff sets up FDHOLDER_HANDOFF_FD as an upgrading holder does before
// execve(2): a control listener bound at ctl and a held TCP listener, whose
// descriptors the hand-off list owns from then on (this process reads the
// list back, as the upgraded image would).
func handOff(t testing.TB, ctl string) {
	t.Helper()
	t.Setenv(fdstore.HandoffEnv, "")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: ctl, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // the hand-off keeps a duplicate
	h := fdstore.NewHandoff()
	if err := h.AddControl(ln); err != nil {
		h.Close()
		t.Fatal(err)
	}
	n, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	fd := sockfd.New(n)
	err = unix.Bind(n, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	if err == nil {
		err = unix.Listen(n, 16)
	}
	var info sockfd.Info
	if err == nil {
		info, err = sockfd.Inspect(fd)
	}
	if err == nil {
		e := proto.Entry{Name: "web", Network: info.Network, Address: info.Address, Listening: true, StoredAt: time.Now()}
		err = h.AddEntry(fdstore.Meta{Entry: e}, fd, fdstore.MetaName(1))
	}
	var assign string
	if err == nil {
		assign, err = h.Env()
	}
	if err != nil {
		h.Close()
		fd.Close()
		t.Fatal(err)
	}
	// From here the list names the control duplicate, the list itself and
	// fd: whoever reads it owns them, so neither h nor fd is closed here.
	_, v, _ := strings.Cut(assign, "=")
	t.Setenv(fdstore.HandoffEnv, v)
}
