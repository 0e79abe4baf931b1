package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// The upgrade row signals whichever process has the holder's socket open:
// it must find the process that listens, and fall back when none does.
func TestHolderPID(t *testing.T) {
	testutil.CheckLeaks(t)
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "h.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tests := []struct {
		name     string
		path     string
		fallback int
		want     int
	}{
		{name: "listening here", path: path, fallback: -1, want: os.Getpid()},
		{name: "nobody listens", path: filepath.Join(dir, "none.sock"), fallback: 42, want: 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := holderPID(tt.path, tt.fallback); got != tt.want {
				t.Errorf("holderPID(%s) = %d, want %d", tt.path, got, tt.want)
			}
		})
	}
}
