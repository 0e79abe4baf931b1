package fdholder

import (
	"context"
	"os"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// FD owns one descriptor received from the holder, without an *os.File:
// the Go runtime's netpoller never sees it. An *os.File of a non-blocking
// socket (as held sockets are) costs an fcntl(F_GETFL), an
// epoll_ctl(EPOLL_CTL_ADD) and a finalizer when it is made, and an
// epoll_ctl(EPOLL_CTL_DEL) when it is closed (os.NewFile, epoll(7)): work
// for nothing in a program that only passes the descriptor on, to a child
// process (syscall.ForkExec's Files, dup2(2) before execve(2)) or over
// another Unix socket. GetFD returns one; FD.File turns it into an
// *os.File when the caller wants one after all.
//
// FDs come from GetFD and ListenFD: hold them as *FD. A nil *FD and a
// declared (zero) FD own nothing, and their methods do nothing. An FD is
// safe for concurrent use, but the caller must not close it while a system
// call uses its number.
type FD sockfd.FD

// Fd returns the descriptor number, for a system call. It stays valid until
// Close or File; the caller must not close the number itself. Unlike
// os.File.Fd it changes nothing: the descriptor keeps the mode the socket
// had when it was stored (usually non-blocking, a flag of the open file
// description the holder and every other holder of the socket share,
// fcntl(2)). It returns -1 once f is closed or handed to File, and for a
// nil f.
func (f *FD) Fd() int {
	if f == nil {
		return -1
	}
	return f.sock().Sysfd()
}

// Close closes the descriptor; the holder's copy stays open. Closing an FD
// again, or one handed to File, does nothing and returns nil.
func (f *FD) Close() error { return f.sock().Close() }

// File hands the descriptor over to a new *os.File (os.NewFile, which
// registers a non-blocking socket with the netpoller) without duplicating
// it: the caller owns and must close the file, and f owns nothing any more.
// It returns nil if f was closed or already handed over, or is nil.
func (f *FD) File() *os.File {
	if f == nil {
		return nil
	}
	return f.sock().File("fdholder:fd")
}

func (f *FD) sock() *sockfd.FD { return (*sockfd.FD)(f) }

// GetFD is Get without the *os.File: it returns a duplicate of the
// descriptor held under name as an FD that the caller owns and must close
// (FD.Close, or FD.File and then the file's Close); the holder keeps its
// copy. Use it to pass a held socket on without serving it in this
// process; to serve it, Get or Listen. Errors are Get's.
func (c *Client) GetFD(ctx context.Context, name string) (*FD, Entry, error) {
	fd, e, err := c.fetchFD(ctx, proto.OpGet, name, false)
	if err != nil {
		return nil, Entry{}, err
	}
	return (*FD)(fd), e, nil
}
