package fdstore

import (
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/sdnotify"
)

// Mirror keeps a copy of a Registry's entries in systemd's file descriptor
// store: it is the Registry's holder.Observer. Each new socket is stored
// once under SocketName(inode), each entry's metadata under a new
// MetaName; a removal drops the metadata, and the socket once no entry
// holds it any more. Store the socket before the metadata and drop the
// metadata before the socket, so a crash in between leaves a socket without
// metadata (which recovery drops: its entry had not been acknowledged, or
// was being removed), never metadata without its socket.
//
// systemd does not acknowledge store messages (sd_notify(3)): a store that
// systemd refuses (FileDescriptorStoreMax= reached, or no store configured)
// is only visible in systemd's own log.
type Mirror struct {
	log *zap.Logger
	n   *sdnotify.Socket

	mu     sync.Mutex
	next   uint64          // the next metadata sequence number
	byID   map[uint64]item // held entries, by holder.Change.ID
	socks  map[uint64]int  // stored sockets, by inode: entries holding each
	expect map[string]item // recovered entries already in the store, by name
	buf    []byte          // metadata encoding buffer
	stats  Stats
}

// Stats counts what a Mirror did since it was made, for metrics: the
// changes it sent to the store (an addition: the socket if new, then the
// metadata; a removal: the metadata, then the socket if no entry holds it
// any more), and those of which a message could not be sent. Recovered
// entries adopted as they are send nothing and are not counted.
type Stats struct {
	Stores, StoreFailures   uint64
	Removes, RemoveFailures uint64
}

// Stats returns the counts so far.
func (m *Mirror) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

type item struct {
	meta string // the metadata's store name
	ino  uint64 // the socket's inode
}

// NewMirror returns a Mirror that sends through n, which it borrows for its
// whole life (the caller keeps n open while the Mirror observes changes),
// numbering metadata from firstSeq on: pass Recovered.NextSeq so that new
// metadata always sorts after what is already in the store.
func NewMirror(n *sdnotify.Socket, log *zap.Logger, firstSeq uint64) *Mirror {
	if log == nil {
		log = zap.NewNop()
	}
	return &Mirror{log: log, n: n, next: max(firstSeq, 1), byID: make(map[uint64]item), socks: make(map[uint64]int)}
}

// Observe mirrors one change; see holder.Observer. Every failure is
// logged. An addition that fails returns the error: the registry then
// refuses the store (or load), since it would not survive a crash of the
// holder; a restore that fails stays held, without that guarantee.
func (m *Mirror) Observe(c holder.Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.Added {
		return m.add(c)
	}
	m.remove(c)
	return nil
}

func (m *Mirror) add(c holder.Change) error {
	ino, err := Inode(c.FD)
	if err != nil {
		return m.failed(c, "inspect", err)
	}
	if it, ok := m.expect[c.Entry.Name]; ok && c.Why == "load" && it.ino == ino {
		// Recovered, and still in the store as it is: adopt it, without a
		// message. systemd compares every descriptor stored with all it
		// holds, so storing thousands again would take seconds.
		delete(m.expect, c.Entry.Name)
		m.socks[ino]++
		m.byID[c.ID] = it
		return nil
	}
	m.stats.Stores++
	if m.socks[ino] == 0 {
		if err := m.n.Store(SocketName(ino), c.FD); err != nil {
			return m.failed(c, "store socket", err)
		}
	}
	name := MetaName(m.next)
	m.next++
	meta := Meta{Entry: c.Entry, Inode: ino}
	mfd, err := metaFile(&meta, &m.buf)
	if err == nil {
		err = m.n.Store(name, mfd)
		mfd.Close()
	}
	if err != nil {
		if m.socks[ino] == 0 {
			m.n.Remove(SocketName(ino))
		}
		return m.failed(c, "store metadata", err)
	}
	m.socks[ino]++
	m.byID[c.ID] = item{meta: name, ino: ino}
	return nil
}

func (m *Mirror) remove(c holder.Change) {
	it, ok := m.byID[c.ID]
	if !ok {
		return // its store had failed, and was logged then
	}
	delete(m.byID, c.ID)
	m.stats.Removes++
	sent := true
	if err := m.n.Remove(it.meta); err != nil {
		m.failed(c, "remove metadata", err) // logged; the error goes nowhere
		sent = false
	}
	if m.socks[it.ino]--; m.socks[it.ino] <= 0 {
		delete(m.socks, it.ino)
		if err := m.n.Remove(SocketName(it.ino)); err != nil {
			m.failed(c, "remove socket", err)
			sent = false
		}
	}
	if !sent {
		m.stats.RemoveFailures++
	}
}

// failed logs a change that could not be mirrored and returns the error;
// an addition stops at its first failure, so it counts it here too.
func (m *Mirror) failed(c holder.Change, step string, err error) error {
	if c.Added {
		m.stats.StoreFailures++
	}
	msg := "file descriptor store: cannot mirror a change"
	switch {
	case c.Added && c.Why != "restore":
		msg += "; the entry is refused, it would not survive a crash of the holder"
	case c.Added:
		msg += "; the entry is held but may not survive a crash of the holder"
	}
	m.log.Warn(msg, zap.String("op", "fdstore"), zap.String("name", c.Entry.Name), zap.String("why", c.Why),
		zap.String("step", step), zap.Error(err))
	return fmt.Errorf("file descriptor store: %s: %w", step, err)
}

// Expect tells the mirror that the recovered entries are in the store
// already, under their metadata names: when the registry loads them, the
// mirror adopts them rather than storing them again. Call EndRecovery
// once they are loaded.
func (m *Mirror) Expect(entries []Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expect = make(map[string]item, len(entries))
	for _, e := range entries {
		m.expect[e.Entry.Name] = item{meta: e.MetaName, ino: e.Inode}
	}
}

// EndRecovery drops from the store the recovered entries that the
// registry did not load after all (their metadata, and their sockets if no
// entry holds them).
func (m *Mirror) EndRecovery() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, it := range m.expect {
		m.log.Info("file descriptor store: dropping an entry that was not held again", zap.String("op", "fdstore"),
			zap.String("name", name), zap.String("fd_name", it.meta))
		m.n.Remove(it.meta)
		if m.socks[it.ino] == 0 {
			m.n.Remove(SocketName(it.ino))
		}
	}
	m.expect = nil
}

// MetaName returns the store name of the metadata of the entry with the
// given holder.Change.ID, if it was mirrored.
func (m *Mirror) MetaName(id uint64) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.byID[id]
	return it.meta, ok
}

// ReserveName returns a metadata name the mirror will never use, for an
// entry it has not stored (an upgrade names every entry's metadata).
func (m *Mirror) ReserveName() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	name := MetaName(m.next)
	m.next++
	return name
}

// Remove drops names from the store (FDSTOREREMOVE=1): what recovery found
// stale. Failures are logged.
func (m *Mirror) Remove(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range names {
		m.stats.Removes++
		if err := m.n.Remove(name); err != nil {
			m.stats.RemoveFailures++
			m.log.Warn("file descriptor store: cannot remove a stale descriptor",
				zap.String("op", "fdstore"), zap.String("fd_name", name), zap.Error(err))
		}
	}
}
