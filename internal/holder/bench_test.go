package holder_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/metrics"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
	"github.com/fdholder/fdholder/internal/testutil"
)

// BenchmarkServerGet measures the holder's get path in-process: a real
// Server on a real socket, a real held TCP listener, and a client that
// sends a get and receives the descriptor with raw blocking system calls
// and preallocated buffers, so that it allocates nothing: the allocations
// reported are the holder's. "audit" logs each request as fdholderd does by
// default (zap's console encoder, here into io.Discard), "audit-json" as
// fdholderd --log-format json does; "nolog" does not log; "metrics" is
// "nolog" with the request observer of fdholderd --metrics-address (not
// scraped meanwhile: a scrape takes the registry's read lock, which a get
// shares).
//
//	go test -run '^$' -bench ServerGet -benchmem ./internal/holder
func BenchmarkServerGet(b *testing.B) {
	for _, tt := range []struct {
		name string
		log  *zap.Logger
		obs  holder.RequestObserver
	}{
		{name: "nolog"},
		{name: "audit", log: auditLogger(false)},
		{name: "audit-json", log: auditLogger(true)},
		{name: "metrics", obs: metrics.New(metrics.Options{})},
	} {
		b.Run(tt.name, func(b *testing.B) {
			testutil.CheckLeaks(b)
			path := serveBench(b, holder.ServerOptions{Logger: tt.log, Requests: tt.obs})
			c := holdertest.DialRaw(b, path, 5*time.Second)
			req, err := proto.AppendRequest(nil, &proto.Request{Op: proto.OpGet, Name: "web"})
			if err != nil {
				b.Fatal(err)
			}
			r := newRawRecv(proto.MaxReplySize, unix.CmsgSpace(4*4))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, errno := unix.Syscall(unix.SYS_SENDTO, uintptr(c.FD), uintptr(unsafe.Pointer(&req[0])), uintptr(len(req))); errno != 0 {
					b.Fatal(errno)
				}
				n, oobn, err := r.recv(c.FD)
				if err != nil {
					b.Fatal(err)
				}
				// One SCM_RIGHTS message with one descriptor: its data starts
				// right after the aligned header.
				if oobn < unix.CmsgLen(4) || n < proto.HeaderSize || r.buf[7] != 0 {
					b.Fatalf("reply of %d bytes, %d of control data, status %d", n, oobn, r.buf[7])
				}
				unix.Close(int(int32(binary.NativeEndian.Uint32(r.oob[unix.CmsgLen(0):]))))
			}
		})
	}
}

// rawRecv is recvmsg(2) with its message header, buffers and the peer
// address space allocated once: unix.Recvmsg allocates the sender's address
// on every call, which would count against the holder.
type rawRecv struct {
	buf, oob []byte
	iov      unix.Iovec
	name     unix.RawSockaddrAny
	msg      unix.Msghdr
}

func newRawRecv(size, oobSize int) *rawRecv {
	r := &rawRecv{buf: make([]byte, size), oob: make([]byte, oobSize)}
	r.iov.Base = &r.buf[0]
	r.iov.SetLen(size)
	r.msg.Iov = &r.iov
	r.msg.Iovlen = 1
	r.msg.Control = &r.oob[0]
	return r
}

func (r *rawRecv) recv(fd int) (n, oobn int, err error) {
	for {
		r.msg.Name = (*byte)(unsafe.Pointer(&r.name))
		r.msg.Namelen = uint32(unsafe.Sizeof(r.name))
		r.msg.SetControllen(len(r.oob))
		m, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.msg)), unix.MSG_CMSG_CLOEXEC)
		if errno == unix.EINTR { // the runtime's preemption signals
			continue
		}
		if errno != 0 {
			return 0, 0, errno
		}
		return int(m), int(r.msg.Controllen), nil
	}
}

// auditLogger logs at info into io.Discard with the encoder settings of
// fdholderd (cmd/fdholderd/logger.go): console, its default, or json.
func auditLogger(json bool) *zap.Logger {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	enc := zapcore.NewJSONEncoder(ec)
	if !json {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
}

// serveBench serves a registry holding one TCP listener, "web", and returns
// the socket path. Everything is closed at the end of the benchmark.
func serveBench(b *testing.B, opts holder.ServerOptions) string {
	b.Helper()
	reg := holder.NewRegistry(holder.RegistryOptions{})
	b.Cleanup(reg.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	var fd *sockfd.FD
	var derr error
	if err := rc.Control(func(n uintptr) {
		var d int
		if d, derr = unix.FcntlInt(n, unix.F_DUPFD_CLOEXEC, 0); derr == nil {
			fd = sockfd.New(d)
		}
	}); err != nil || derr != nil {
		b.Fatal(err, derr)
	}
	info, err := sockfd.Inspect(fd)
	if err != nil {
		fd.Close()
		b.Fatal(err)
	}
	if _, err := reg.Store("web", fd, holder.StoreOptions{Info: info}); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(testutil.ShortDir(b), "h.sock")
	uln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		b.Fatal(err)
	}
	srv := holder.NewServer(reg, opts)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), uln) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, holder.ErrServerClosed) {
			b.Errorf("serve: %v", err)
		}
	})
	return path
}

// BenchmarkRegistryPages walks a registry of 1000 TCP listeners page by page
// as list (Registry.List, with each listener's live queue) and dump
// (Registry.Page, proto.MaxBatchEntries handles at most) do, every entry shown or every other
// one hidden by a Visible filter (a policy that lets a peer see some).
//
//	go test -run '^$' -bench RegistryPages -benchmem ./internal/holder
func BenchmarkRegistryPages(b *testing.B) {
	const entries = 1000
	for _, tt := range []struct {
		name    string
		visible func(*proto.Entry) bool
	}{
		{name: "all"},
		{name: "half", visible: func(e *proto.Entry) bool { return e.Name[len(e.Name)-1]%2 == 0 }},
	} {
		b.Run("list/"+tt.name, func(b *testing.B) {
			testutil.CheckLeaks(b)
			reg := benchRegistry(b, entries)
			var dst []proto.Entry
			b.ReportAllocs()
			for b.Loop() {
				n, opts := 0, holder.ListOptions{Visible: tt.visible}
				for more := true; more; {
					dst, more = reg.List(dst[:0], opts)
					n += len(dst)
					opts.After = dst[len(dst)-1].Name
				}
				if n == 0 || n > entries {
					b.Fatalf("%d entries listed", n)
				}
			}
		})
		b.Run("page/"+tt.name, func(b *testing.B) {
			testutil.CheckLeaks(b)
			reg := benchRegistry(b, entries)
			b.ReportAllocs()
			for b.Loop() {
				n, opts := 0, holder.ListOptions{Visible: tt.visible}
				for more := true; more; {
					var page []holder.Handle
					page, more = reg.Page(opts, proto.MaxBatchEntries)
					n += len(page)
					opts.After = page[len(page)-1].Entry().Name
					for _, h := range page {
						h.Release()
					}
				}
				if n == 0 || n > entries {
					b.Fatalf("%d entries paged", n)
				}
			}
		})
	}
}

// benchRegistry returns a registry holding n entries, e0000 ..., each a
// duplicate of one real TCP listener. It is closed at the end of the
// benchmark.
func benchRegistry(b *testing.B, n int) *holder.Registry {
	b.Helper()
	reg := holder.NewRegistry(holder.RegistryOptions{})
	b.Cleanup(reg.Close)
	ln := testutil.ListenTCP(b)
	first, err := sockfd.DupConn(ln)
	if err != nil {
		b.Fatal(err)
	}
	defer first.Close()
	info, err := sockfd.Inspect(first)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		fd, err := first.Dup()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := reg.Store(fmt.Sprintf("e%04d", i), fd, holder.StoreOptions{Info: info}); err != nil {
			b.Fatal(err)
		}
	}
	return reg
}
