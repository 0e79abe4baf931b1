package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fdholder/fdholder/internal/testutil"
)

// manager is a stand-in for the service manager: a real unixgram socket at
// NOTIFY_SOCKET whose datagrams the test reads.
type manager struct {
	path string
	conn *net.UnixConn
}

func listenManager(t *testing.T) *manager {
	t.Helper()
	return listenManagerAt(t, filepath.Join(testutil.ShortDir(t), "notify"))
}

// listenManagerAt is listenManager at path: a file, or '@' and an abstract
// name.
func listenManagerAt(t *testing.T, path string) *manager {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return &manager{path: path, conn: conn}
}

// next returns the next datagram.
func (m *manager) next(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 4096)
	m.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := m.conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// mark sends a datagram of the test's own, so that reading it back proves
// that nothing was sent before it.
func (m *manager) mark(t *testing.T, s string) {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: m.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestNotifier(t *testing.T) {
	testutil.CheckLeaks(t)
	m := listenManager(t)
	var count atomic.Int64
	n := New(zaptest.NewLogger(t), func() int { return int(count.Load()) })
	if !n.Enabled() {
		t.Fatal("not enabled with NOTIFY_SOCKET set")
	}

	n.Ready()
	if got, want := m.next(t), "READY=1\nSTATUS=holding 0 entries"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	// A burst of changes that ends at 5: one report, of 5.
	for i := 1; i <= 5; i++ {
		count.Store(int64(i))
		n.Changed()
	}
	for range 1000 {
		n.Changed()
	}
	var seen []string
	for got := m.next(t); got != Status(5); got = m.next(t) {
		seen = append(seen, got)
	}
	if len(seen) > 4 {
		t.Errorf("%d reports before the last of a burst of 5 changes: %q", len(seen), seen)
	}
	// A change that leaves the count as it was reports nothing: the next
	// report is that of the next real change.
	n.Changed()
	count.Store(6)
	n.Changed()
	if got := m.next(t); got != Status(6) {
		t.Errorf("got %q, want %q and no repeat of the count of 5", got, Status(6))
	}

	n.Stopping()
	if got, want := m.next(t), "STOPPING=1\nSTATUS=stopping"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// After Stopping, changes are not reported.
	count.Store(0)
	n.Changed()
	n.Stopping() // a second call does nothing
	m.mark(t, "mark 2")
	if got := m.next(t); got != "mark 2" {
		t.Errorf("got %q after Stopping, want nothing", got)
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name    string
		entries int
		want    string
	}{
		{"none", 0, "STATUS=holding 0 entries"},
		{"one", 1, "STATUS=holding 1 entry"},
		{"many", 1234, "STATUS=holding 1234 entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Status(tt.entries); got != tt.want {
				t.Errorf("Status(%d) = %q, want %q", tt.entries, got, tt.want)
			}
		})
	}
}

// TestChangedNeverBlocks: the registry calls Changed after each change; it
// must return even while the notifier is stuck (here, in count).
func TestChangedNeverBlocks(t *testing.T) {
	testutil.CheckLeaks(t)
	m := listenManager(t)
	release := make(chan struct{})
	var calls atomic.Int64
	n := New(zaptest.NewLogger(t), func() int {
		if calls.Add(1) > 1 { // the first call is Ready's
			<-release
		}
		return int(calls.Load())
	})
	n.Ready()
	m.next(t)
	for range 100000 {
		n.Changed()
	}
	close(release)
	n.Stopping()
	// The loop's one report (for the count it read), then STOPPING.
	for got := m.next(t); got != "STOPPING=1\nSTATUS=stopping"; got = m.next(t) {
		if !strings.HasPrefix(got, "STATUS=holding ") {
			t.Fatalf("unexpected %q", got)
		}
	}
}

func TestDisabled(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := New(nil, func() int {
		t.Error("count called with NOTIFY_SOCKET unset")
		return 0
	})
	if n.Enabled() {
		t.Error("enabled with NOTIFY_SOCKET unset")
	}
	n.Ready()
	n.Changed()
	n.Changed() // a second pending change must not block either
	n.Stopping()
}

func TestStoppingBeforeReady(t *testing.T) {
	m := listenManager(t)
	n := New(zaptest.NewLogger(t), func() int { return 0 })
	n.Stopping()
	if got := m.next(t); got != "STOPPING=1\nSTATUS=stopping" {
		t.Errorf("got %q", got)
	}
	n.Ready() // too late: nothing
	m.mark(t, "mark")
	if got := m.next(t); got != "mark" {
		t.Errorf("got %q after Ready following Stopping, want nothing", got)
	}
}

func TestSendFailureLogged(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(testutil.ShortDir(t), "nobody"))
	core, logs := observer.New(zap.WarnLevel)
	n := New(zap.New(core), func() int { return 0 })
	n.Ready()
	n.Stopping()
	if got := logs.FilterMessage("cannot notify the service manager").Len(); got != 2 {
		t.Errorf("%d warnings logged for 2 failed notifications, want 2", got)
	}
}

// TestWatchdog runs the pings against a stand-in manager: WATCHDOG=1
// arrives after each call of alive, through the package's Socket (abstract
// names included, as sd_notify(3) allows), and stopping ctx closes that
// socket (CheckLeaks).
func TestWatchdog(t *testing.T) {
	tests := []struct {
		name     string
		abstract bool
	}{
		{name: "a path"},
		{name: "an abstract name", abstract: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			var m *manager
			if tt.abstract {
				m = listenManagerAt(t, fmt.Sprintf("@fdholder-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
			} else {
				m = listenManager(t)
			}
			t.Setenv("WATCHDOG_USEC", "20000")
			t.Setenv("WATCHDOG_PID", "")
			var alive atomic.Int64
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			Watchdog(ctx, zaptest.NewLogger(t), func() { alive.Add(1) })
			for range 3 {
				if got := m.next(t); got != "WATCHDOG=1" {
					t.Fatalf("got %q, want WATCHDOG=1", got)
				}
			}
			if alive.Load() < 3 {
				t.Errorf("alive called %d times for 3 pings", alive.Load())
			}
		})
	}
}

// TestWatchdogDisabled: without WATCHDOG_USEC, or without NOTIFY_SOCKET,
// Watchdog returns without opening a socket, which its pings would need
// (it opens it before it returns).
func TestWatchdogDisabled(t *testing.T) {
	tests := []struct {
		name         string
		usec, socket bool
	}{
		{name: "no WATCHDOG_USEC", socket: true},
		{name: "no NOTIFY_SOCKET", usec: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			listenManager(t)
			t.Setenv("WATCHDOG_PID", "")
			t.Setenv("WATCHDOG_USEC", "")
			if tt.usec {
				t.Setenv("WATCHDOG_USEC", "20000")
			}
			if !tt.socket {
				t.Setenv("NOTIFY_SOCKET", "")
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			before := len(testutil.OpenFDs(t))
			Watchdog(ctx, zaptest.NewLogger(t), func() { t.Error("alive called") })
			if after := len(testutil.OpenFDs(t)); after != before {
				t.Errorf("%d descriptors open after Watchdog, %d before: it opened a socket", after, before)
			}
		})
	}
}
