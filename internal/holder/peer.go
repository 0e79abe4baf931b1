package holder

import (
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
)

// Peer is the identity of a connected client as the kernel recorded it
// when the client connected: SO_PEERCRED (uid, gid, pid) and SO_PEERGROUPS
// (supplementary groups), both from socket(7)/unix(7). Nothing the client
// sends can change it, and reading it at accept time from the socket (not
// from /proc/PID) cannot race with the client exiting and its pid being
// reused.
type Peer struct {
	UID, GID uint32
	PID      int32
	Groups   []uint32 // supplementary groups, sorted; the primary GID may or may not be among them
}

// Owner returns the peer as the owner of an entry it stores.
func (p *Peer) Owner() Owner { return Owner{UID: p.UID, GID: p.GID, PID: p.PID} }

// InGroup reports whether gid is the peer's primary group or one of its
// supplementary groups.
func (p *Peer) InGroup(gid uint32) bool {
	if p.GID == gid {
		return true
	}
	_, found := slices.BinarySearch(p.Groups, gid)
	return found
}

// peerOf reads the identity of the client at the other end of pc, whose
// credentials (SO_PEERCRED) the caller has read already.
func peerOf(pc *proto.Conn, cred *unix.Ucred) (Peer, error) {
	p := Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}
	rc, err := pc.UnixConn().SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var gerr error
	if err := rc.Control(func(fd uintptr) { p.Groups, gerr = peerGroups(int(fd)) }); err != nil {
		return Peer{}, err
	}
	if gerr != nil {
		return Peer{}, gerr
	}
	slices.Sort(p.Groups)
	return p, nil
}

// peerGroups returns the supplementary groups of the peer of a connected
// AF_UNIX socket: getsockopt SO_PEERGROUPS (Linux 4.13, socket(7)). The
// kernel fails it with ERANGE and sets the length it needs when the buffer
// is too small, so it asks again with that length.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]byte, 64*4)
	for range 4 {
		n := uint32(len(buf))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		switch {
		case errno == 0:
			groups := make([]uint32, 0, n/4)
			for b := buf[:n]; len(b) >= 4; b = b[4:] {
				groups = append(groups, binary.NativeEndian.Uint32(b))
			}
			return groups, nil
		case errno == unix.ERANGE && int(n) > len(buf):
			buf = make([]byte, n)
		case errno == unix.ENOPROTOOPT:
			// A kernel older than 4.13: only the primary group is known,
			// so rules by gid match only that.
			return nil, nil
		default:
			return nil, os.NewSyscallError("getsockopt SO_PEERGROUPS", errno)
		}
	}
	return nil, errors.New("getsockopt SO_PEERGROUPS: the group list kept growing")
}
