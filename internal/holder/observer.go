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
// delays the operation that made the change (its reply waits for it) and
// the other changes, but never a Get or a List. The operation returns only
// once its change has been observed, so a client that got an OK reply knows
// the copy was made. Closing the registry is not a change.
type Observer interface {
	Observe(Change)
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

// deliver hands every pending change to the observer, in order. Whoever
// holds obsMu delivers everything queued so far, so when deliver returns,
// the changes its caller queued have been observed: either by this call or
// by the one that held obsMu before it.
func (r *Registry) deliver() {
	if r.obs == nil {
		return
	}
	r.obsMu.Lock()
	defer r.obsMu.Unlock()
	for {
		r.mu.Lock()
		batch := r.pending
		r.pending = nil
		r.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for _, c := range batch {
			r.observe(c)
		}
	}
}

func (r *Registry) observe(c Change) {
	e := c.e
	c.e = nil
	r.obs.Observe(c)
	if e != nil {
		e.release() // the reference queueAdded took
	}
}
