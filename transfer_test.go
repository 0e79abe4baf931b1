package fdholder_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// TestTransferLoadReplyWithDescriptors: a destination whose load reply
// carries descriptors (a broken or hostile holder) leaks none of them into
// the client, as a store reply carrying one leaks nothing.
func TestTransferLoadReplyWithDescriptors(t *testing.T) {
	testutil.CheckLeaks(t)
	src := holdertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dial(t, src.Path)
	if _, err := c.Store(ctx, "web", testutil.ListenTCP(t), fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}

	// The destination answers every load with one OK result per entry and
	// a socket pair's ends attached.
	path := filepath.Join(testutil.ShortDir(t), "dst.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // if no connection comes
	done := make(chan struct{})
	go func() {
		defer close(done)
		uc, err := ln.AcceptUnix()
		ln.Close()
		if err != nil {
			return
		}
		defer uc.Close()
		buf := make([]byte, proto.MaxLoadRequestSize)
		oob := make([]byte, unix.CmsgSpace(proto.MaxMessageFDs*4))
		for {
			n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
			if err != nil || n == 0 {
				return
			}
			testutil.CloseRights(oob[:oobn])
			req, err := proto.DecodeRequest(buf[:n])
			if err != nil {
				return
			}
			out, err := proto.AppendReply(nil, &proto.Reply{Op: req.Op, Results: make([]proto.Result, len(req.Entries))})
			if err != nil {
				return
			}
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return
			}
			_, _, err = uc.WriteMsgUnix(out, unix.UnixRights(pair[:]...), nil)
			unix.Close(pair[0])
			unix.Close(pair[1])
			if err != nil {
				return
			}
		}
	}()
	dst, err := fdholder.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}

	res, err := c.Transfer(ctx, dst, fdholder.TransferOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Copied != 1 || len(res.Failed) != 0 {
		t.Errorf("copied %d, failed %v; want 1 copied", res.Copied, res.Failed)
	}
	dst.Close()
	<-done
}
