package fdholder_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/testutil"
)

// BenchmarkGet measures a get round trip through the Go client against an
// in-process holder on a real socket: request, lookup, reply with one
// descriptor, close of the received duplicate. Do not pin it to one core:
// the client waits in a blocking recvmsg(2) that keeps the process's only
// P until the runtime's sysmon takes it back for the in-process holder, so
// the figure would measure sysmon's wake-up. bench/run measures the client
// against a holder in its own process, pinned.
func BenchmarkGet(b *testing.B) {
	// A holder without its audit log, which would dominate the figure.
	reg := holder.NewRegistry(holder.RegistryOptions{})
	defer reg.Close()
	path := filepath.Join(testutil.ShortDir(b), "h.sock")
	hl, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		b.Fatal(err)
	}
	srv := holder.NewServer(reg, holder.ServerOptions{})
	defer srv.Close()
	go srv.Serve(context.Background(), hl)
	ctx := context.Background()
	c, err := fdholder.Dial(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	if _, err := c.Store(ctx, "web", ln, fdholder.StoreOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f, _, err := c.Get(ctx, "web")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
