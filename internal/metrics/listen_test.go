package metrics_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/metrics"
	"github.com/fdholder/fdholder/internal/sockfd"
	"github.com/fdholder/fdholder/internal/testutil"
)

// TestListenUnix checks what Listen does with whatever is at a unix:PATH
// already: the same decision as the control socket's (ctlsock.Stale).
func TestListenUnix(t *testing.T) {
	// listener returns a listener of network at path, closed at the end.
	listener := func(t *testing.T, network, path string) *net.UnixListener {
		ln, err := net.ListenUnix(network, &net.UnixAddr{Name: path, Net: network})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr func(error) bool // nil: Listen succeeds
		kept    bool             // the file at path is left as it was
	}{
		{name: "nothing there", prepare: func(*testing.T, string) {}},
		{name: "a stale socket file", prepare: func(t *testing.T, path string) {
			ln := listener(t, "unix", path)
			ln.SetUnlinkOnClose(false)
			ln.Close() // the file stays; nobody listens on it
		}},
		{name: "a process listening", kept: true, prepare: func(t *testing.T, path string) {
			listener(t, "unix", path)
		}, wantErr: func(err error) bool {
			var inUse *ctlsock.InUseError
			return errors.As(err, &inUse) && inUse.PID == int32(os.Getpid())
		}},
		{name: "a socket of another type in use", kept: true, prepare: func(t *testing.T, path string) {
			listener(t, "unixpacket", path)
		}, wantErr: func(err error) bool { return strings.Contains(err.Error(), "a socket of another type is in use") }},
		{name: "a regular file", kept: true, prepare: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: func(err error) bool { return errors.Is(err, sockfd.ErrNotSocket) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			path := filepath.Join(testutil.ShortDir(t), "m.sock")
			tt.prepare(t, path)
			before, _ := os.Lstat(path)
			ln, err := metrics.Listen(context.Background(), "unix:"+path)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Listen: %v", err)
				}
				defer ln.Close()
				c, err := net.Dial("unix", path)
				if err != nil {
					t.Fatalf("dial the new listener: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				ln.Close()
				t.Fatal("Listen succeeded, want an error")
			}
			if !tt.wantErr(err) {
				t.Errorf("Listen: %v: not the error wanted", err)
			}
			if after, serr := os.Lstat(path); tt.kept && (serr != nil || !os.SameFile(before, after)) {
				t.Errorf("the file at the path was replaced or removed (%v)", serr)
			}
		})
	}
}
