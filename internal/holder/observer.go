package holder

import (
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// Change is one entry starting or stopping being held.
type Change struct {
	// Added is true when the entry became held (store, replace, load,
	// restore), false when it stopped being held (delete, take, expire, or
	// the old entry of a replace).
	Added bool

	// ID identifies the held entry for the registry's life. A replace is
	// the addition of a new ID followed by the removal of the old one.
	ID uint64

	// Entry describes the entry, as stored.
	Entry proto.Entry

	// FD is the held descriptor, when Added. It is owned by the registry
	// and stays open until Observe returns, even if the entry is removed
	// meanwhile; Observe must not close it.
	FD *sockfd.FD

	// Why is what made the change: store, replace, load, restore, delete,
	// take or expire.
	Why string

	e *entry // the reference an addition holds until delivered
}

// Observer sees the changes of a Registry, for keeping a copy of its
// entries elsewhere (systemd's file descriptor store).
//
// The registry calls Observe once per change, one call at a time, in the
// order it made the changes, and never under its own lock: a slow Observe
// delays the changes (every change waits for the one before to be
// observed) but never a Get or a List. A store or load is observed before
// it takes effect, and only takes effect if Observe returns nil: otherwise
// it fails with that error and nothing changes, so a client that got an OK
// reply knows the copy was made. The errors of other changes (removals,
// the restore of a take that could not be delivered) are the observer's
// to report. Closing the registry is not a change.
type Observer interface {
	Observe(Change) error
}

// lockObs starts a change: with an observer, changes are made one at a
// time, so that a store's copy is made before it takes effect and nothing
// it checked can change meanwhile. flush ends it.
func (r *Registry) lockObs() {
	if r.obs != nil {
		r.obsMu.Lock()
	}
}

// flush hands the changes queued under lockObs to the observer, in order,
// and ends the change.
func (r *Registry) flush() {
	if r.obs == nil {
		return
	}
	defer r.obsMu.Unlock()
	r.mu.Lock()
	batch := r.pending
	r.pending = nil
	r.mu.Unlock()
	for _, c := range batch {
		r.observe(c)
	}
}

// queueAdded queues the addition of e for the observer. Called under r.mu.
// The change holds a reference to e, so its descriptor stays open until the
// change is delivered.
func (r *Registry) queueAdded(e *entry, why string) {
	if r.obs == nil {
		return
	}
	e.refs.Add(1)
	r.pending = append(r.pending, Change{Added: true, ID: e.id, Entry: e.info, FD: e.fd, Why: why, e: e})
}

// queueRemoved queues the removal of e for the observer. Called under r.mu.
func (r *Registry) queueRemoved(e *entry, why string) {
	if r.obs == nil {
		return
	}
	r.pending = append(r.pending, Change{ID: e.id, Entry: e.info, Why: why})
}

func (r *Registry) observe(c Change) {
	e := c.e
	c.e = nil
	r.obs.Observe(c) // the observer reports its own failures: see Observer
	if e != nil {
		e.release() // the reference queueAdded took
	}
}
