package holder

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// Owner identifies the process that stored an entry (SO_PEERCRED).
type Owner struct {
	UID, GID uint32
	PID      int32
}

// RegistryOptions configures a Registry. The zero value is valid.
type RegistryOptions struct {
	// Logger receives a line for each entry that expires. Nil: no logging.
	Logger *zap.Logger

	// OnChange, if set, is called with the number of held entries after
	// every change, outside the registry's lock. It must not block.
	OnChange func(entries int)
}

// Registry is the set of held descriptors, by name. It is safe for
// concurrent use. It owns every descriptor stored in it and closes each one
// when its entry is deleted, replaced, expired or taken, or when the
// registry is closed, but never while a Get of it is still sending it.
type Registry struct {
	log      *zap.Logger
	onChange func(int)

	mu      sync.RWMutex
	entries map[string]*entry
	byUID   map[uint32]int // entries held per owner uid
	closed  bool
	// sorted holds the names in order for paging through List. It is
	// rebuilt lazily, on the first List after a change.
	sorted []string
	dirty  bool
}

// entry is one held descriptor. Its fields never change after it is stored,
// except refs and timer.
type entry struct {
	info proto.Entry // without the live queue figures
	fd   *sockfd.FD
	// refs counts the registry's own reference while the entry is in the
	// map, plus one per send in flight. The last release closes fd.
	refs  atomic.Int32
	timer *time.Timer // expiry, or nil
}

func (e *entry) release() {
	if e.refs.Add(-1) == 0 {
		e.fd.Close()
	}
}

// NewRegistry returns an empty registry.
func NewRegistry(opts RegistryOptions) *Registry {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Registry{log: log, onChange: opts.OnChange, entries: make(map[string]*entry), byUID: make(map[uint32]int)}
}

// Len returns the number of held entries.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.entries)
}

func (r *Registry) changed(n int) {
	if r.onChange != nil {
		r.onChange(n)
	}
}

// Store holds fd under name, owned by owner; a positive ttl makes it expire.
// It takes ownership of fd, even on error. If name is held, Store fails with
// proto.ErrExists unless replace is set; a replace swaps the new descriptor
// in atomically, then closes the old copy once no Get is sending it.
// Store does not validate the name or inspect fd: the caller does.
func (r *Registry) Store(name string, fd *sockfd.FD, info sockfd.Info, owner Owner, ttl time.Duration, replace bool) (proto.Entry, error) {
	return r.StoreGuarded(name, fd, info, owner, ttl, replace, nil)
}

// Counts is what a store would leave held: entries in total, and entries
// whose owner has the new entry's uid.
type Counts struct{ Total, OwnerUID int }

// StoreGuard vets a store under the registry's write lock, so that nothing
// it checks can change before the store takes effect. old is the entry the
// store would replace (nil if the name is free); after is what would be
// held once it is done. A non-nil error refuses the store.
type StoreGuard func(old *proto.Entry, after Counts) error

// EntryGuard vets a take or delete of e under the registry's write lock.
type EntryGuard func(e *proto.Entry) error

// StoreGuarded is Store, vetted by guard (nil: no vetting) once the name's
// current entry is known. It takes ownership of fd, even on error.
func (r *Registry) StoreGuarded(name string, fd *sockfd.FD, info sockfd.Info, owner Owner, ttl time.Duration, replace bool, guard StoreGuard) (proto.Entry, error) {
	now := time.Now()
	e := &entry{fd: fd, info: proto.Entry{
		Name:      name,
		Network:   info.Network,
		Address:   info.Address,
		Listening: info.Listening,
		UID:       owner.UID,
		GID:       owner.GID,
		PID:       owner.PID,
		StoredAt:  now.Round(0), // wall clock for display; expiry runs on a monotonic timer
	}}
	if ttl > 0 {
		e.info.ExpiresAt = e.info.StoredAt.Add(ttl)
	}
	e.refs.Store(1)

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		fd.Close()
		return proto.Entry{}, proto.Errorf(proto.CodeInternal, "the holder is shutting down")
	}
	old := r.entries[name]
	if old != nil && !replace {
		r.mu.Unlock()
		fd.Close()
		return proto.Entry{}, proto.Errorf(proto.CodeExists, "name already held")
	}
	if guard != nil {
		after := Counts{Total: len(r.entries), OwnerUID: r.byUID[owner.UID]}
		if old == nil {
			after.Total++
		}
		if old == nil || old.info.UID != owner.UID {
			after.OwnerUID++
		}
		var oldInfo *proto.Entry
		if old != nil {
			oldInfo = &old.info
		}
		if err := guard(oldInfo, after); err != nil {
			r.mu.Unlock()
			fd.Close()
			return proto.Entry{}, err
		}
	}
	r.entries[name] = e
	r.byUID[owner.UID]++
	if old != nil {
		r.uncount(old)
	}
	if old == nil {
		r.dirty = true
	}
	if ttl > 0 {
		e.timer = time.AfterFunc(ttl, func() { r.expire(name, e) })
	}
	n := len(r.entries)
	r.mu.Unlock()

	if old != nil {
		old.stop()
		old.release()
	}
	r.changed(n)
	return e.info, nil
}

func (e *entry) stop() {
	if e.timer != nil {
		e.timer.Stop()
	}
}

// expire removes e if it is still the entry held under name.
func (r *Registry) expire(name string, e *entry) {
	r.mu.Lock()
	if r.entries[name] != e {
		r.mu.Unlock()
		return
	}
	delete(r.entries, name)
	r.uncount(e)
	r.dirty = true
	n := len(r.entries)
	r.mu.Unlock()
	e.release()
	r.log.Info("entry expired", zap.String("op", "expire"), zap.String("name", name))
	r.changed(n)
}

// Handle is a reference to a held descriptor, from Get or Take. The
// descriptor stays open until Release; a Handle must be released exactly once.
type Handle struct{ e *entry }

// FD returns the held descriptor. It is owned by the registry: use it only
// until Release, and do not close it.
func (h Handle) FD() *sockfd.FD { return h.e.fd }

// Entry describes the held descriptor.
func (h Handle) Entry() *proto.Entry { return &h.e.info }

// Release drops the reference. After a Take it closes the holder's copy.
func (h Handle) Release() { h.e.release() }

// Get returns a reference to the entry held under name, or proto.ErrNotFound.
func (r *Registry) Get(name string) (Handle, error) {
	r.mu.RLock()
	e := r.entries[name]
	if e != nil {
		// Safe under the read lock: the map's reference keeps refs above 0
		// until a writer removes the entry.
		e.refs.Add(1)
	}
	r.mu.RUnlock()
	if e == nil {
		return Handle{}, errNotHeld
	}
	return Handle{e}, nil
}

// errNotHeld is the error of a request for a name that is not held. Error
// messages leave out the op and the name: the client puts them in front.
var errNotHeld = &proto.Error{Code: proto.CodeNotFound, Message: "not held"}

// uncount drops e from the per-uid counts; the caller holds the write lock.
func (r *Registry) uncount(e *entry) {
	if r.byUID[e.info.UID]--; r.byUID[e.info.UID] <= 0 {
		delete(r.byUID, e.info.UID)
	}
}

// HeldBy returns how many entries owner uid holds.
func (r *Registry) HeldBy(uid uint32) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byUID[uid]
}

// Take removes the entry held under name and returns the registry's
// reference to it: releasing the handle closes the holder's copy. If the
// descriptor cannot be handed on, Restore puts it back.
func (r *Registry) Take(name string) (Handle, error) {
	return r.TakeGuarded(name, nil)
}

// TakeGuarded is Take, vetted by guard (nil: no vetting) under the lock.
func (r *Registry) TakeGuarded(name string, guard EntryGuard) (Handle, error) {
	e, n, err := r.remove(name, guard)
	if err != nil {
		return Handle{}, err
	}
	r.changed(n)
	return Handle{e}, nil
}

// Restore puts back an entry removed by Take whose descriptor could not be
// delivered, if its name is still free, and reports whether it did. Either
// way it consumes h.
func (r *Registry) Restore(h Handle) bool {
	e := h.e
	name := e.info.Name
	r.mu.Lock()
	if _, held := r.entries[name]; held || r.closed {
		r.mu.Unlock()
		e.release()
		return false
	}
	if !e.info.ExpiresAt.IsZero() {
		left := time.Until(e.info.ExpiresAt)
		if left <= 0 {
			r.mu.Unlock()
			e.release()
			return false
		}
		e.timer = time.AfterFunc(left, func() { r.expire(name, e) })
	}
	r.entries[name] = e
	r.byUID[e.info.UID]++
	r.dirty = true
	n := len(r.entries)
	r.mu.Unlock()
	r.changed(n)
	return true
}

// Delete removes the entry held under name and closes the holder's copy
// once no Get is sending it.
func (r *Registry) Delete(name string) error {
	return r.DeleteGuarded(name, nil)
}

// DeleteGuarded is Delete, vetted by guard (nil: no vetting) under the lock.
func (r *Registry) DeleteGuarded(name string, guard EntryGuard) error {
	e, n, err := r.remove(name, guard)
	if err != nil {
		return err
	}
	e.release()
	r.changed(n)
	return nil
}

// remove takes name out of the map, if guard (when not nil) allows it, and
// stops its timer; the caller owns the registry's reference to the returned
// entry.
func (r *Registry) remove(name string, guard EntryGuard) (*entry, int, error) {
	r.mu.Lock()
	e := r.entries[name]
	if e == nil {
		r.mu.Unlock()
		return nil, 0, errNotHeld
	}
	if guard != nil {
		if err := guard(&e.info); err != nil {
			r.mu.Unlock()
			return nil, 0, err
		}
	}
	delete(r.entries, name)
	r.uncount(e)
	r.dirty = true
	n := len(r.entries)
	r.mu.Unlock()
	e.stop()
	return e, n, nil
}

// List appends to dst the entries whose names sort after the name after, in
// order, as many as fit in one list reply, and reports whether more follow.
// TCP listeners come with their live accept queue.
func (r *Registry) List(dst []proto.Entry, after string) ([]proto.Entry, bool) {
	return r.ListFiltered(dst, after, nil)
}

// ListFiltered is List showing only the entries visible reports true for
// (nil: all). It is called under the registry's read lock and must not call
// the registry. Hidden entries are skipped inside the page, so a page still
// fills up and the cursor (the last name sent) still advances past them.
func (r *Registry) ListFiltered(dst []proto.Entry, after string, visible func(*proto.Entry) bool) ([]proto.Entry, bool) {
	r.mu.RLock()
	for r.dirty {
		r.mu.RUnlock()
		r.mu.Lock()
		if r.dirty {
			r.sorted = r.sorted[:0]
			for name := range r.entries {
				r.sorted = append(r.sorted, name)
			}
			slices.Sort(r.sorted)
			r.dirty = false
		}
		r.mu.Unlock()
		r.mu.RLock()
	}
	defer r.mu.RUnlock()
	i := sort.Search(len(r.sorted), func(i int) bool { return r.sorted[i] > after })
	size := 0
	for ; i < len(r.sorted); i++ {
		e := r.entries[r.sorted[i]]
		if visible != nil && !visible(&e.info) {
			continue
		}
		info := e.info
		if info.Listening && (info.Network == "tcp" || info.Network == "tcp6") {
			// The entry is in the map, so its descriptor is open.
			if q, b, err := sockfd.TCPQueue(e.fd); err == nil {
				info.HasQueue, info.Queued, info.Backlog = true, q, b
			}
		}
		size += proto.EntrySize(&info)
		if !proto.ListPageFits(size) {
			return dst, true
		}
		dst = append(dst, info)
	}
	return dst, false
}

// Close closes every held descriptor (each once no Get is sending it) and
// makes later Stores fail.
func (r *Registry) Close() {
	r.mu.Lock()
	old := r.entries
	r.entries = make(map[string]*entry)
	clear(r.byUID)
	r.closed = true
	r.dirty = true
	r.mu.Unlock()
	for _, e := range old {
		e.stop()
		e.release()
	}
	if len(old) > 0 {
		r.changed(0)
	}
}
