package fdstore

import (
	"cmp"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START,
// sd_listen_fds(3)).
const listenFDsStart = 3

// Passed is one descriptor passed at start, with its name. Whoever holds
// the Passed owns FD: Listened and FromHandoff give it to their caller,
// Sort takes it over.
type Passed struct {
	FD   *sockfd.FD
	Name string
	// Data is the content of a metadata descriptor passed inline (FD nil),
	// as an upgrade's hand-off list carries it.
	Data []byte
}

// Listened takes the descriptors passed by systemd (LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES; sd_listen_fds(3)), marks them close-on-exec, and unsets
// the three variables so that no child or upgraded binary sees them. It
// returns none if they are not for this process. The caller owns every
// descriptor returned (pass them to Sort).
func Listened() ([]Passed, error) {
	defer func() {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}()
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil, nil
	}
	var names []string
	if s, ok := os.LookupEnv("LISTEN_FDNAMES"); ok {
		names = strings.Split(s, ":")
	}
	out := make([]Passed, n)
	for i := range n {
		fd := listenFDsStart + i
		unix.CloseOnExec(fd)
		name := "unknown" // what sd_listen_fds_with_names(3) reports without names
		if i < len(names) {
			name = names[i]
		}
		out[i] = Passed{FD: sockfd.New(fd), Name: name}
	}
	return out, nil
}

// Entry is one recovered entry. The caller owns FD.
type Entry struct {
	Meta
	FD       *sockfd.FD
	MetaName string // the store name of its metadata, which stays in the store
}

// Recovered is what Sort made of the passed descriptors.
type Recovered struct {
	// Controls are the control listeners: named ControlName (or any name
	// but the store's) and listening AF_UNIX SOCK_SEQPACKET sockets. The
	// caller owns them.
	Controls []*os.File

	// Entries are the entries to hold again, in name order, one per name.
	// The caller owns their descriptors.
	Entries []Entry

	// Stale are the store names to remove (FDSTOREREMOVE=1): metadata of
	// entries not recovered, sockets that no entry kept, and descriptors
	// that are not the store's. Their descriptors are closed. What was
	// recovered stays in the store as it is (Mirror.Expect adopts it).
	Stale []string

	// NextSeq is above every metadata sequence number seen.
	NextSeq uint64

	// Expired, Lost and Dropped count the entries not recovered: expired
	// while the holder was down; metadata without its socket; superseded
	// by a newer metadata of the same name, or unreadable.
	Expired, Lost, Dropped int
}

// Close closes every descriptor r owns, the control listeners' and the
// entries', for a caller that will not use them (a start that failed before
// recovery). Closing again does nothing.
func (r *Recovered) Close() {
	for _, f := range r.Controls {
		f.Close()
	}
	for _, e := range r.Entries {
		e.FD.Close()
	}
	r.Controls, r.Entries = nil, nil
}

// Sort sorts passed descriptors into control listeners and entries, as
// described by Recovered, logging each one it drops and why. It takes
// ownership of every descriptor in passed: each is returned (in a control
// file or an Entry) or closed.
func Sort(log *zap.Logger, passed []Passed, now time.Time) Recovered {
	if log == nil {
		log = zap.NewNop()
	}
	var r Recovered
	r.NextSeq = 1
	sockets := make(map[uint64]*sockfd.FD) // by inode
	socketNames := make(map[uint64]string)
	type metaFD struct {
		name string
		seq  uint64
		meta Meta
	}
	var metas []metaFD
	for _, p := range passed {
		kind, n := parseName(p.Name)
		if p.FD == nil && kind != 'm' {
			// Inline data (a hand-off's meta line) under a name that is
			// not metadata's: there is no descriptor to keep or close.
			log.Warn("recovery: dropping inline data that is not metadata", zap.String("fd_name", p.Name))
			r.Stale = append(r.Stale, p.Name)
			continue
		}
		switch kind {
		case 's':
			ino, err := Inode(p.FD)
			if err != nil || ino != n {
				log.Warn("recovery: dropping a stored socket whose inode does not match its name",
					zap.String("fd_name", p.Name), zap.Error(err))
				p.FD.Close()
				r.Stale = append(r.Stale, p.Name)
				continue
			}
			if _, dup := sockets[ino]; dup {
				p.FD.Close() // the same socket passed twice: one copy is enough
				continue
			}
			sockets[ino], socketNames[ino] = p.FD, p.Name
		case 'm':
			r.NextSeq = max(r.NextSeq, n+1)
			var m Meta
			var err error
			if p.FD == nil {
				m, err = DecodeMeta(p.Data)
			} else {
				m, err = readMeta(p.FD)
				p.FD.Close()
			}
			if err != nil {
				log.Warn("recovery: dropping unreadable metadata", zap.String("fd_name", p.Name), zap.Error(err))
				r.Stale = append(r.Stale, p.Name)
				r.Dropped++
				continue
			}
			metas = append(metas, metaFD{name: p.Name, seq: n, meta: m})
		default:
			f := p.FD.File(p.Name)
			ok, err := ctlsock.IsControlListener(f)
			if ok {
				r.Controls = append(r.Controls, f)
				continue
			}
			kindName := "unknown"
			if fi, serr := f.Stat(); serr == nil {
				kindName = sockfd.DescribeType(fi.Mode())
			}
			log.Warn("closing a passed descriptor that is not a control socket",
				zap.String("fd_name", p.Name), zap.String("type", kindName), zap.Error(err))
			f.Close()
			r.Stale = append(r.Stale, p.Name)
		}
	}

	// One entry per name: the metadata stored last (highest sequence
	// number) wins; an older one is a replace that a crash interrupted.
	slices.SortFunc(metas, func(a, b metaFD) int {
		return cmp.Or(strings.Compare(a.meta.Entry.Name, b.meta.Entry.Name), cmp.Compare(b.seq, a.seq))
	})
	// The entries kept, then their sockets: the last entry of a socket
	// gets the passed descriptor itself, the others duplicates, so that
	// recovery needs no descriptor per entry beyond its socket's.
	var kept []metaFD
	for i, m := range metas {
		e := m.meta.Entry
		if i > 0 && metas[i-1].meta.Entry.Name == e.Name {
			log.Info("recovery: dropping an older copy of an entry", zap.String("name", e.Name), zap.String("fd_name", m.name))
			r.Stale = append(r.Stale, m.name)
			r.Dropped++
			continue
		}
		if !e.ExpiresAt.IsZero() && !e.ExpiresAt.After(now) {
			log.Info("recovery: entry expired while the holder was down", zap.String("name", e.Name),
				zap.Time("expired_at", e.ExpiresAt))
			r.Stale = append(r.Stale, m.name)
			r.Expired++
			continue
		}
		if _, ok := sockets[m.meta.Inode]; !ok {
			log.Warn("recovery: entry lost: its socket is not in the store", zap.String("name", e.Name),
				zap.String("fd_name", m.name))
			r.Stale = append(r.Stale, m.name)
			r.Lost++
			continue
		}
		kept = append(kept, m)
	}
	users := make(map[uint64]int)
	for _, m := range kept {
		users[m.meta.Inode]++
	}
	for _, m := range kept {
		e := m.meta.Entry
		fd := sockets[m.meta.Inode]
		if users[m.meta.Inode]--; users[m.meta.Inode] == 0 {
			delete(sockets, m.meta.Inode) // handed over, not closed below
			r.Entries = append(r.Entries, Entry{Meta: m.meta, FD: fd, MetaName: m.name})
			continue
		}
		dup, err := fd.Dup()
		if err != nil {
			log.Warn("recovery: entry lost: cannot duplicate its socket", zap.String("name", e.Name), zap.Error(err))
			r.Stale = append(r.Stale, m.name)
			r.Lost++
			continue
		}
		r.Entries = append(r.Entries, Entry{Meta: m.meta, FD: dup, MetaName: m.name})
	}
	// What is left in sockets is what no kept entry holds: the last
	// entry of each socket took it out above.
	for ino, fd := range sockets {
		fd.Close()
		log.Info("recovery: dropping a stored socket that no entry holds", zap.String("fd_name", socketNames[ino]))
		r.Stale = append(r.Stale, socketNames[ino])
	}
	slices.Sort(r.Stale)
	return r
}
