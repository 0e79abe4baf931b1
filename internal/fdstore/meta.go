package fdstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// Names of descriptors in the store and in an upgrade's hand-off.
const (
	// ControlName names the control socket: the FileDescriptorName= of
	// fdholderd.socket, and the name an upgrade passes it under.
	ControlName = "control"
	// socketPrefix + the inode number in base 36 names a held socket.
	socketPrefix = "fhs"
	// metaPrefix + a sequence number in base 36 names an entry's metadata.
	metaPrefix = "fhm"
)

// SocketName is the store name of the socket with inode ino.
func SocketName(ino uint64) string { return socketPrefix + strconv.FormatUint(ino, 36) }

// MetaName is the store name of the metadata with sequence number seq.
func MetaName(seq uint64) string { return metaPrefix + strconv.FormatUint(seq, 36) }

// parseName returns the kind ('s' socket, 'm' metadata, 0 neither) and the
// number of a store name.
func parseName(name string) (kind byte, n uint64) {
	var rest string
	switch {
	case strings.HasPrefix(name, socketPrefix):
		kind, rest = 's', name[len(socketPrefix):]
	case strings.HasPrefix(name, metaPrefix):
		kind, rest = 'm', name[len(metaPrefix):]
	default:
		return 0, 0
	}
	if rest == "" || strings.ToLower(rest) != rest {
		return 0, 0
	}
	n, err := strconv.ParseUint(rest, 36, 64)
	if err != nil {
		return 0, 0
	}
	return kind, n
}

// Metadata encoding, version 1 (all integers big-endian):
//
//	"FHMD" | version u8 = 1 | flags u8 (bit 0: listening) |
//	inode u64 | stored_at u64 (Unix ns) | expires_at u64 (Unix ns, 0: never) |
//	uid u32 | gid u32 | pid i32 |
//	name: len u16 + bytes | network: len u16 + bytes | address: len u16 + bytes
//
// A reader refuses any other version and any trailing byte: an entry whose
// metadata cannot be read is not recovered, rather than recovered wrong.
const (
	metaMagic   = "FHMD"
	metaVersion = 1
	metaFixed   = 4 + 1 + 1 + 8 + 8 + 8 + 4 + 4 + 4
	// MaxMetaSize bounds a metadata file: the fixed part and three strings
	// within the protocol's limits.
	MaxMetaSize = metaFixed + 3*2 + proto.MaxNameLen + 255 + proto.MaxMessageLen
)

// Meta is what the store keeps of one entry besides its socket.
type Meta struct {
	Entry proto.Entry // without the live queue figures
	Inode uint64      // of the entry's socket (fstat st_ino)
}

// AppendMeta appends the version 1 encoding of m to dst.
func AppendMeta(dst []byte, m *Meta) []byte {
	e := &m.Entry
	dst = append(dst, metaMagic...)
	dst = append(dst, metaVersion)
	var flags byte
	if e.Listening {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = binary.BigEndian.AppendUint64(dst, m.Inode)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.StoredAt.UnixNano()))
	var exp uint64
	if !e.ExpiresAt.IsZero() {
		exp = uint64(e.ExpiresAt.UnixNano())
	}
	dst = binary.BigEndian.AppendUint64(dst, exp)
	dst = binary.BigEndian.AppendUint32(dst, e.UID)
	dst = binary.BigEndian.AppendUint32(dst, e.GID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(e.PID))
	for _, s := range []string{e.Name, e.Network, e.Address} {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

var errBadMeta = errors.New("not fdholder metadata")

// DecodeMeta decodes a version 1 metadata encoding.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) < metaFixed || string(b[:4]) != metaMagic {
		return m, errBadMeta
	}
	if b[4] != metaVersion {
		return m, fmt.Errorf("metadata version %d: this holder reads version %d", b[4], metaVersion)
	}
	flags := b[5]
	if flags&^1 != 0 {
		return m, fmt.Errorf("metadata flags %#x: unknown bits", flags)
	}
	e := &m.Entry
	e.Listening = flags&1 != 0
	m.Inode = binary.BigEndian.Uint64(b[6:])
	e.StoredAt = time.Unix(0, int64(binary.BigEndian.Uint64(b[14:])))
	if exp := binary.BigEndian.Uint64(b[22:]); exp != 0 {
		e.ExpiresAt = time.Unix(0, int64(exp))
	}
	e.UID = binary.BigEndian.Uint32(b[30:])
	e.GID = binary.BigEndian.Uint32(b[34:])
	e.PID = int32(binary.BigEndian.Uint32(b[38:]))
	rest := b[metaFixed:]
	for _, s := range []*string{&e.Name, &e.Network, &e.Address} {
		if len(rest) < 2 {
			return m, fmt.Errorf("metadata truncated")
		}
		l := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+l {
			return m, fmt.Errorf("metadata truncated")
		}
		*s = string(rest[2 : 2+l])
		rest = rest[2+l:]
	}
	if len(rest) != 0 {
		return m, fmt.Errorf("metadata: %d trailing bytes", len(rest))
	}
	return m, nil
}

// metaFile returns a sealed memfd (memfd_create(2), fcntl(2) F_ADD_SEALS)
// holding the encoding of m, made in *buf, which it keeps for reuse. The
// caller owns the returned FD and must close it. Sealed, it cannot change
// after it is stored: what comes back is what was written.
func metaFile(m *Meta, buf *[]byte) (f *sockfd.FD, err error) {
	n, err := unix.MemfdCreate("fdholder-meta", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f = sockfd.New(n)
	defer func() {
		if err != nil {
			f.Close()
			f = nil
		}
	}()
	fd := f.Sysfd()
	b := AppendMeta((*buf)[:0], m)
	*buf = b // kept for the next metadata file
	if n, err := unix.Write(fd, b); err != nil || n != len(b) {
		if err == nil {
			err = fmt.Errorf("short write: %d of %d bytes", n, len(b))
		}
		return nil, os.NewSyscallError("write metadata", err)
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return nil, os.NewSyscallError("fcntl F_ADD_SEALS", err)
	}
	return f, nil
}

// readMeta reads and decodes the metadata file f, from its start. f stays
// the caller's.
func readMeta(f *sockfd.FD) (Meta, error) {
	buf := make([]byte, MaxMetaSize+1)
	n, err := unix.Pread(f.Sysfd(), buf, 0)
	if err != nil {
		return Meta{}, os.NewSyscallError("pread", err)
	}
	if n > MaxMetaSize {
		return Meta{}, fmt.Errorf("metadata larger than %d bytes", MaxMetaSize)
	}
	return DecodeMeta(buf[:n])
}

// Inode returns the inode number of f's descriptor (fstat(2) st_ino). For
// a socket it identifies the socket: the kernel gives each socket one file.
// f stays the caller's, who keeps it open during the call.
func Inode(f *sockfd.FD) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(f.Sysfd(), &st); err != nil {
		return 0, os.NewSyscallError("fstat", err)
	}
	return st.Ino, nil
}
