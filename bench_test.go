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
	benchGets(b, func(ctx context.Context, c *fdholder.Client) error {
		f, _, err := c.Get(ctx, "web")
		if err != nil {
			return err
		}
		return f.Close()
	})
}

// BenchmarkGetFD is BenchmarkGet through GetFD: no *os.File, no netpoller
// registration of the received descriptor.
func BenchmarkGetFD(b *testing.B) {
	benchGets(b, func(ctx context.Context, c *fdholder.Client) error {
		fd, _, err := c.GetFD(ctx, "web")
		if err != nil {
			return err
		}
		return fd.Close()
	})
}

// benchGets runs get b.N times against benchHolder's holder.
func benchGets(b *testing.B, get func(context.Context, *fdholder.Client) error) {
	c := benchHolder(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := get(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

// benchHolder starts an in-process holder holding a TCP listener as "web",
// and returns a client dialled to it; both end with b.
func benchHolder(b *testing.B) *fdholder.Client {
	// A holder without its audit log, which would dominate the figure.
	reg := holder.NewRegistry(holder.RegistryOptions{})
	b.Cleanup(func() { reg.Close() })
	path := filepath.Join(testutil.ShortDir(b), "h.sock")
	hl, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		b.Fatal(err)
	}
	srv := holder.NewServer(reg, holder.ServerOptions{})
	b.Cleanup(func() { srv.Close() })
	go srv.Serve(context.Background(), hl)
	ctx := context.Background()
	c, err := fdholder.Dial(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	if _, err := c.Store(ctx, "web", ln, fdholder.StoreOptions{}); err != nil {
		b.Fatal(err)
	}
	return c
}
