package holder

import (
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// Defaults of Limits, also the defaults of fdholderd's flags.
const (
	// DefaultMaxConns is s6-fdholderd's maximum and then some; a client
	// holds a connection for a few requests, so thousands at once are a flood.
	DefaultMaxConns = 1024
	// DefaultMaxConnsPerUID bounds the connections of one unprivileged uid,
	// and so the descriptors it can keep in flight in unread replies (one
	// per connection for get and take, a page for dump: deliver.go, rule 2)
	// far below any RLIMIT_NOFILE a holder runs with.
	DefaultMaxConnsPerUID = 64
	// DefaultMaxEntries leaves room for a million held sockets (a holder
	// for 100,000 listeners is a real use), far beyond any RLIMIT_NOFILE
	// soft limit a distribution ships.
	DefaultMaxEntries = 1 << 20
	// DefaultMaxEntriesPerUID bounds what one unprivileged uid can make the
	// holder keep open. Root and the holder's uid are bounded only by
	// MaxEntries.
	DefaultMaxEntriesPerUID = 4096
	// DefaultIdleTimeout closes a connection that sends nothing for this
	// long: a client sends its request as soon as it connects.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultRequestTimeout bounds how long one reply may wait for a client
	// that does not read its socket.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultFDReserve is how many descriptors below RLIMIT_NOFILE a store
	// leaves free, for accept(2), the log, and replies in flight.
	DefaultFDReserve = 64
)

// maxRefusing bounds the goroutines that answer connections beyond
// MaxConns with an error; past it, such connections are closed at once.
const maxRefusing = 64

// refuseWait is how long a connection beyond MaxConns or MaxConnsPerUID
// has to send its request before it is closed without an answer.
const refuseWait = 200 * time.Millisecond

// Limits bounds what peers can make the holder spend. The zero value of a
// field means its default (the Default* constants); a negative value turns
// the limit off.
type Limits struct {
	// MaxConns is the most connections served at once. One more is
	// accepted, its first request answered with proto.CodeLimit, and closed
	// (closed at once when many are being refused at the same time).
	MaxConns int
	// MaxConnsPerUID is the most connections served at once for one uid
	// other than root and the holder's own uid; one more is refused as one
	// beyond MaxConns is, with a message naming the per-uid limit.
	MaxConnsPerUID int
	// MaxEntries is the most entries held in total.
	MaxEntries int
	// MaxEntriesPerUID is the most entries held for one owner uid other than
	// root and the holder's own uid.
	MaxEntriesPerUID int
	// IdleTimeout closes a connection that sends no request for this long.
	IdleTimeout time.Duration
	// RequestTimeout bounds how long, from a request's arrival, its reply
	// may wait for a client that does not read: for room at the peer, and,
	// for a reply with descriptors, for the peer to read the reply before
	// it (deliver.go, rules 1 and 2); the connection is then closed.
	RequestTimeout time.Duration
	// FDReserve is how many descriptors under the RLIMIT_NOFILE soft limit
	// stay free: a store that would eat into them fails with
	// proto.CodeLimit, so that accept(2) keeps working.
	FDReserve int
}

// WithDefaults returns l with its zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxConns, DefaultMaxConns)
	def(&l.MaxConnsPerUID, DefaultMaxConnsPerUID)
	def(&l.MaxEntries, DefaultMaxEntries)
	def(&l.MaxEntriesPerUID, DefaultMaxEntriesPerUID)
	def(&l.FDReserve, DefaultFDReserve)
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.RequestTimeout == 0 {
		l.RequestTimeout = DefaultRequestTimeout
	}
	return l
}

// fdRoom refuses a store when the holder is near its descriptor limit. The
// number of open descriptors is first estimated without reading anything:
// the kernel hands out the lowest free number (open(2)), so every number
// below the stored descriptor's is in use; and every held entry and
// connection has one. Within twice the reserve of the limit it counts them
// exactly (openFDs). The soft limit is read live (getrlimit(2)): an
// operator may change it with prlimit(1).
func (s *Server) fdRoom(fd *sockfd.FD) error {
	if s.limits.FDReserve < 0 {
		return nil
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return nil // cannot tell; let the store proceed
	}
	s.mu.Lock()
	conns := len(s.conns)
	s.mu.Unlock()
	used := uint64(max(fd.Sysfd()+1, s.reg.Len()+conns+1))
	if used+2*uint64(s.limits.FDReserve) > rl.Cur {
		// Close to the limit: count exactly, once per store from here on.
		if n, err := openFDs(); err == nil {
			used = max(used, uint64(n))
		}
	}
	if used+uint64(s.limits.FDReserve) > rl.Cur {
		return proto.Errorf(proto.CodeLimit, "the holder is near its descriptor limit (RLIMIT_NOFILE %d, %d kept in reserve)", rl.Cur, s.limits.FDReserve)
	}
	return nil
}

// storeLimits checks the entry limits of a store that would leave after
// held, for a peer of uid (privileged: root or the holder's uid).
func (s *Server) storeLimits(uid uint32, privileged, newName bool, after Counts) error {
	if newName && s.limits.MaxEntries > 0 && after.Total > s.limits.MaxEntries {
		return proto.Errorf(proto.CodeLimit, "the holder holds its maximum of %d entries", s.limits.MaxEntries)
	}
	if !privileged && s.limits.MaxEntriesPerUID > 0 && after.OwnerUID > s.limits.MaxEntriesPerUID {
		return proto.Errorf(proto.CodeLimit, "uid %d holds its maximum of %d entries", uid, s.limits.MaxEntriesPerUID)
	}
	return nil
}

// openFDs counts this process's open descriptors. Since Linux 6.2 the
// size that stat(2) reports for /proc/self/fd is that count (proc(5)), which
// costs no descriptor and no read of the directory; before, the size is 0
// and the entries are counted, not counting the one reading the directory
// (issue 8: near the limit, every store read all of /proc/self/fd).
func openFDs() (int, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/fd", &st); err == nil && st.Size > 0 {
		return int(st.Size), nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(ents) - 1, nil
}
