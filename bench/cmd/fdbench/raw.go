package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
)

// blockingConn speaks the protocol with blocking system calls on a socket
// the Go runtime does not know (not in its netpoller), with its buffers and
// message header allocated once: what a Go client costs when it does what
// the C client does. It measures; it is not a client to copy.
type blockingConn struct {
	fd  int
	req []byte
	buf []byte
	oob []byte
	iov unix.Iovec
	msg unix.Msghdr
}

func dialBlocking(path, name string) (*blockingConn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	req, err := proto.AppendRequest(nil, &proto.Request{Op: proto.OpGet, Name: name})
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := &blockingConn{fd: fd, req: req, buf: make([]byte, proto.MaxReplySize), oob: make([]byte, unix.CmsgSpace(4*4))}
	c.iov.Base = &c.buf[0]
	c.iov.SetLen(len(c.buf))
	c.msg.Iov = &c.iov
	c.msg.Iovlen = 1
	c.msg.Control = &c.oob[0]
	return c, nil
}

// get does one get round trip and closes the descriptor received, through
// an *os.File if wrap is set.
func (c *blockingConn) get(wrap bool) error {
	if _, _, errno := unix.Syscall(unix.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&c.req[0])), uintptr(len(c.req))); errno != 0 {
		return os.NewSyscallError("send", errno)
	}
	var n uintptr
	for {
		c.msg.SetControllen(len(c.oob))
		var errno unix.Errno
		n, _, errno = unix.Syscall(unix.SYS_RECVMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&c.msg)), unix.MSG_CMSG_CLOEXEC)
		if errno == unix.EINTR { // the runtime's preemption signals
			continue
		}
		if errno != 0 {
			return os.NewSyscallError("recvmsg", errno)
		}
		break
	}
	if c.msg.Controllen < uint64(unix.CmsgLen(4)) || n < proto.HeaderSize || c.buf[7] != 0 {
		return fmt.Errorf("get: reply of %d bytes, %d of control data, status %d", n, c.msg.Controllen, c.buf[7])
	}
	fd := int(int32(binary.NativeEndian.Uint32(c.oob[unix.CmsgLen(0):])))
	if wrap {
		return os.NewFile(uintptr(fd), "held").Close()
	}
	return unix.Close(fd)
}
