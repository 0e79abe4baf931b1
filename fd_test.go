package fdholder_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// TestGetFD: GetFD returns the held socket itself (same inode), still
// non-blocking, out of the runtime's netpoller, owned by the caller (Close
// closes it once, File hands it over), and leaves the holder's copy held;
// bad input gets Get's errors and no FD.
func TestGetFD(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := dial(t, h.Path)
	ctx := context.Background()
	ln := testutil.ListenTCP(t)
	addr := ln.Addr().String()
	ino, err := inode(ln)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(ctx, "web", ln, fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	ln.Close() // the holder's copy keeps the socket open

	for _, tc := range []struct {
		name, get string
		wantErr   error
	}{
		{name: "held", get: "web"},
		{name: "not held", get: "none", wantErr: fdholder.ErrNotFound},
		{name: "invalid name", get: "bad:name", wantErr: fdholder.ErrInvalidName},
		{name: "empty name", get: "", wantErr: fdholder.ErrInvalidName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, e, err := c.GetFD(ctx, tc.get)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || fd != nil {
					t.Fatalf("GetFD(%q) = %v, %v; want nil, %v", tc.get, fd, err, tc.wantErr)
				}
				// The nil FD of a failed call owns nothing.
				if fd.Fd() != -1 || fd.File() != nil || fd.Close() != nil {
					t.Errorf("a nil FD: Fd() = %d", fd.Fd())
				}
				if !strings.Contains(err.Error(), strconv.Quote(tc.get)) {
					t.Errorf("error %q does not name %q", err, tc.get)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer fd.Close()
			if e.Name != tc.get || e.Address != addr {
				t.Errorf("entry = %+v, want %s at %s", e, tc.get, addr)
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd.Fd(), &st); err != nil || st.Ino != ino {
				t.Errorf("fstat(%d): inode %d, %v; want the stored socket's %d", fd.Fd(), st.Ino, err, ino)
			}
			flags, err := unix.FcntlInt(uintptr(fd.Fd()), unix.F_GETFL, 0)
			if err != nil || flags&unix.O_NONBLOCK == 0 {
				t.Errorf("F_GETFL = %#x, %v: O_NONBLOCK was cleared", flags, err)
			}
			if polled(t, fd.Fd()) {
				t.Errorf("descriptor %d is registered with the netpoller", fd.Fd())
			}

			// File hands the descriptor over: the file serves it, the FD
			// owns nothing.
			n := fd.Fd()
			f := fd.File()
			if f == nil || int(f.Fd()) != n {
				t.Fatalf("File() = %v, want a file of descriptor %d", f, n)
			}
			if fd.Fd() != -1 || fd.File() != nil || fd.Close() != nil {
				t.Errorf("an FD handed to File still owns something: Fd() = %d", fd.Fd())
			}
			accepts(t, f, addr)
			f.Close()

			// Closing an FD leaves the holder's copy held.
			fd2, _, err := c.GetFD(ctx, tc.get)
			if err != nil {
				t.Fatal(err)
			}
			if err := fd2.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if fd2.Fd() != -1 || fd2.Close() != nil {
				t.Errorf("after Close: Fd() = %d, a second Close must do nothing", fd2.Fd())
			}
			g, _, err := c.Get(ctx, tc.get)
			if err != nil {
				t.Fatalf("get after closing the FD: %v", err)
			}
			// The check that polled sees a registration at all: Get's
			// *os.File is registered.
			if !polled(t, int(g.Fd())) {
				t.Errorf("Get's file %d is not seen in the netpoller: polled cannot tell", g.Fd())
			}
			g.Close()
		})
	}
}

// TestGetFDContext: GetFD honours its context's deadline and
// cancellation against a holder that never answers, and returns no FD.
func TestGetFDContext(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{name: "deadline", want: context.DeadlineExceeded, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}},
		{name: "cancelled", want: context.Canceled, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, cancel
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, got := mutePeer(t)
			c := dial(t, path)
			ctx, cancel := tc.ctx()
			defer cancel()
			if tc.want == context.Canceled {
				go func() {
					<-got
					cancel()
				}()
			}
			fd, _, err := c.GetFD(ctx, "web")
			if !errors.Is(err, tc.want) || fd != nil {
				t.Fatalf("GetFD from a mute holder = %v, %v; want nil, %v", fd, err, tc.want)
			}
		})
	}
}

// polled reports whether descriptor n is registered with this process's
// epoll instances: the runtime's netpoller lists its targets as "tfd:"
// lines in the epoll descriptor's fdinfo (proc(5)).
func polled(t testing.TB, n int) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		link, err := os.Readlink("/proc/self/fd/" + ent.Name())
		if err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		f, err := os.Open("/proc/self/fdinfo/" + ent.Name())
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "tfd:" && fields[1] == strconv.Itoa(n) {
				f.Close()
				return true
			}
		}
		f.Close()
	}
	return false
}

// TestListenFD: ListenFD binds and stores a name not held (created), then
// returns the held socket out of the netpoller; a held socket on another
// address is a *MismatchError, an unknown network a clear error, and
// neither returns an FD.
func TestListenFD(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	c := dial(t, h.Path)
	ctx := context.Background()
	var addr string // the address the first case bound
	for _, tc := range []struct {
		name, network string
		address       func() string
		wantCreated   bool
		wantErr       error
	}{
		{name: "not held", network: "tcp", address: func() string { return "127.0.0.1:0" }, wantCreated: true},
		{name: "held", network: "tcp", address: func() string { return addr }},
		{name: "held on another port", network: "tcp", address: func() string { return "127.0.0.1:1" }, wantErr: fdholder.ErrMismatch},
		{name: "unknown network", network: "sctp", address: func() string { return addr }, wantErr: errors.New("unknown network")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, created, err := c.ListenFD(ctx, "web", tc.network, tc.address())
			if tc.wantErr != nil {
				if err == nil || fd != nil || !errors.Is(err, tc.wantErr) && !strings.Contains(err.Error(), tc.wantErr.Error()) {
					t.Fatalf("ListenFD = %v, %v; want nil, %v", fd, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer fd.Close()
			if created != tc.wantCreated {
				t.Errorf("created = %v, want %v", created, tc.wantCreated)
			}
			if polled(t, fd.Fd()) {
				t.Errorf("descriptor %d is registered with the netpoller", fd.Fd())
			}
			sa, err := unix.Getsockname(fd.Fd())
			if err != nil {
				t.Fatal(err)
			}
			in, ok := sa.(*unix.SockaddrInet4)
			if !ok {
				t.Fatalf("getsockname = %T, want an IPv4 address", sa)
			}
			got := "127.0.0.1:" + strconv.Itoa(in.Port)
			if addr == "" {
				addr = got
			} else if got != addr {
				t.Errorf("held socket at %s, want %s", got, addr)
			}
			f := fd.File()
			accepts(t, f, addr)
			f.Close()
		})
	}
}
