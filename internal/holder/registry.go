package holder

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/btree"
	"go.uber.org/zap"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// Owner identifies the process that stored an entry (SO_PEERCRED).
type Owner struct {
	UID, GID uint32
	PID      int32
}

// ownerOf returns the owner recorded in e.
func ownerOf(e *proto.Entry) Owner { return Owner{UID: e.UID, GID: e.GID, PID: e.PID} }

// RegistryOptions configures a Registry. The zero value is valid.
type RegistryOptions struct {
	// Logger receives a line for each entry that expires. Nil: no logging.
	Logger *zap.Logger

	// OnChange, if set, is called with the number of held entries after
	// every change, outside the registry's lock. It must not block. The
	// calls of changes made at once (a store and an expiry) may come in
	// either order, so the count of the last call may be stale: read Len
	// for the current one.
	OnChange func(entries int)

	// Observer, if set, sees every entry that starts or stops being held
	// (see Observer). Nil: none.
	Observer Observer
}

// Registry is the set of held descriptors, by name. It is safe for
// concurrent use. It owns every descriptor stored in it and closes each one
// when its entry is deleted, replaced, expired or taken, or when the
// registry is closed, but never while a Get of it is still sending it.
type Registry struct {
	log      *zap.Logger
	onChange func(int)
	obs      Observer
	// obsMu makes changes one at a time when there is an observer
	// (lockObs), so that the observer sees them in the order they were
	// made, and a store is observed before it takes effect.
	obsMu sync.Mutex

	mu      sync.RWMutex
	entries map[string]*entry
	byUID   map[uint32]int // entries held per owner uid
	closed  bool
	// names holds the names in order for paging through List and Page:
	// a B-tree, so that a change costs O(log n) under the write lock and a
	// page starts in O(log n) under the read lock (issue 8: the first list
	// after a change used to sort every name under the write lock).
	names *btree.BTreeG[string]
	// nextID numbers entries; pending queues changes for the observer, in
	// the order they were made under mu.
	nextID  uint64
	pending []Change
}

// entry is one held descriptor. Its fields never change after it is stored,
// except refs and timer.
type entry struct {
	id   uint64      // unique for the registry's life
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
	return &Registry{log: log, onChange: opts.OnChange, obs: opts.Observer, entries: make(map[string]*entry), byUID: make(map[uint32]int),
		names: btree.NewOrderedG[string](namesDegree)}
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

// StoreOptions says how Store or Load holds a descriptor. The zero value
// holds it for good, under a free name only, vetting nothing.
type StoreOptions struct {
	// Info describes the socket (network, address, whether it listens),
	// as sockfd.Inspect reports it. Store records it; Load takes it from
	// the entry and needs it zero.
	Info sockfd.Info

	// Owner is the process that stores the entry (SO_PEERCRED). Zero:
	// uid, gid and pid 0. Load takes it from the entry and needs it zero.
	Owner Owner

	// TTL, if positive, makes the entry expire that long after it is
	// stored. Zero: it never expires. Load takes the expiry time from the
	// entry and needs it zero.
	TTL time.Duration

	// Replace lets a name that is held be given the new descriptor: the
	// swap is atomic, and the old copy is closed once no Get is sending
	// it. False: a held name fails with proto.ErrExists.
	Replace bool

	// Guard vets the store under the registry's write lock, once the
	// name's current entry is known (see StoreGuard). Nil: no vetting.
	Guard StoreGuard
}

// Store holds fd under name, as opts says. It takes ownership of fd, even
// on error: on every error (a TTL too far away, the name held without
// opts.Replace, opts.Guard refusing, the observer failing, the registry
// closed) fd is closed before Store returns. Store does not validate the
// name or inspect fd: the caller does.
func (r *Registry) Store(name string, fd *sockfd.FD, opts StoreOptions) (proto.Entry, error) {
	now := time.Now()
	e := proto.Entry{
		Name:      name,
		Network:   opts.Info.Network,
		Address:   opts.Info.Address,
		Listening: opts.Info.Listening,
		UID:       opts.Owner.UID,
		GID:       opts.Owner.GID,
		PID:       opts.Owner.PID,
		StoredAt:  now.Round(0), // wall clock for display; expiry runs on a monotonic timer
	}
	if opts.TTL > 0 {
		if err := proto.CheckExpiry(e.StoredAt, opts.TTL); err != nil {
			fd.Close()
			return proto.Entry{}, err
		}
		e.ExpiresAt = e.StoredAt.Add(opts.TTL)
	}
	return r.hold(e, fd, opts.TTL, opts, "store")
}

// Load holds fd under e.Name with the metadata of e as it is (owner, stored
// and expiry times, network and address), for an entry that was held
// before: recovered after a restart or an upgrade, or transferred from
// another holder. The live queue figures of e are ignored. opts.Replace
// and opts.Guard are as for Store (the guard sees e's owner); the other
// fields of opts are e's to say and must be zero. Load takes ownership of
// fd, even on error: it closes fd on every path Store does, when opts sets
// what e says, and when e's expiry time has passed (then it fails with
// proto.ErrNotFound). Load does not validate the name or inspect fd: the
// caller does.
func (r *Registry) Load(e proto.Entry, fd *sockfd.FD, opts StoreOptions) (proto.Entry, error) {
	if opts.Info != (sockfd.Info{}) || opts.Owner != (Owner{}) || opts.TTL != 0 {
		fd.Close()
		return proto.Entry{}, errLoadOptions
	}
	e.HasQueue, e.Queued, e.Backlog = false, 0, 0
	e.StoredAt = e.StoredAt.Round(0)
	var ttl time.Duration
	if !e.ExpiresAt.IsZero() {
		e.ExpiresAt = e.ExpiresAt.Round(0)
		if ttl = time.Until(e.ExpiresAt); ttl <= 0 {
			fd.Close()
			return proto.Entry{}, errExpired
		}
	}
	return r.hold(e, fd, ttl, opts, "load")
}

// errLoadOptions is Load's error for options that would contradict the
// entry: a caller's mistake, never a peer's.
var errLoadOptions = proto.Errorf(proto.CodeInternal, "load: info, owner and ttl come from the entry, not the options")

// errExpired is Load's error for an entry whose time has passed.
var errExpired = &proto.Error{Code: proto.CodeNotFound, Message: "expired"}

// hold puts a new entry for fd in the map, to expire after ttl if it is
// positive; opts.Replace and opts.Guard are as for Store. It takes ownership
// of fd: every error path closes it.
func (r *Registry) hold(info proto.Entry, fd *sockfd.FD, ttl time.Duration, opts StoreOptions, why string) (proto.Entry, error) {
	e := &entry{fd: fd, info: info}
	e.refs.Store(1)
	name, uid := info.Name, info.UID

	r.lockObs()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.flush()
		fd.Close()
		return proto.Entry{}, errShuttingDown
	}
	old := r.entries[name]
	if old != nil && !opts.Replace {
		r.mu.Unlock()
		r.flush()
		fd.Close()
		return proto.Entry{}, proto.Errorf(proto.CodeExists, "name already held")
	}
	if guard := opts.Guard; guard != nil {
		after := Counts{Total: len(r.entries), OwnerUID: r.byUID[uid]}
		if old == nil {
			after.Total++
		}
		if old == nil || old.info.UID != uid {
			after.OwnerUID++
		}
		var oldInfo *proto.Entry
		if old != nil {
			oldInfo = &old.info
		}
		if err := guard(oldInfo, after); err != nil {
			r.mu.Unlock()
			r.flush()
			fd.Close()
			return proto.Entry{}, err
		}
	}
	r.nextID++
	e.id = r.nextID
	if old != nil {
		why = "replace"
	}
	if r.obs != nil {
		// A store is acknowledged only once its copy is made (durable, for
		// systemd's file descriptor store): the observer sees it before
		// it is held, and a failure leaves everything as it was. Every
		// change takes obsMu first, so nothing checked above can change
		// meanwhile but a Close.
		r.mu.Unlock()
		err := r.obs.Observe(Change{Added: true, ID: e.id, Entry: e.info, FD: fd, Why: why})
		r.mu.Lock()
		if err == nil && r.closed {
			r.mu.Unlock()
			r.obs.Observe(Change{ID: e.id, Entry: e.info, Why: why})
			err = errShuttingDown
		} else if err != nil {
			r.mu.Unlock()
			err = proto.Errorf(proto.CodeInternal, "not held: its copy could not be made durable (%v)", err)
		}
		if err != nil {
			r.obsMu.Unlock()
			fd.Close()
			return proto.Entry{}, err
		}
	}
	r.entries[name] = e
	r.byUID[uid]++
	if old != nil {
		r.uncount(old)
	}
	if old == nil {
		r.names.ReplaceOrInsert(name)
	}
	if ttl > 0 {
		e.timer = time.AfterFunc(ttl, func() { r.expire(name, e) })
	}
	// The new entry first (observed above), then the old one's removal:
	// an observer that dies between the two leaves both behind, never
	// neither.
	if old != nil {
		r.queueRemoved(old, "replace")
	}
	n := len(r.entries)
	r.mu.Unlock()

	if old != nil {
		old.stop()
		old.release()
	}
	r.flush()
	r.changed(n)
	return e.info, nil
}

// errShuttingDown refuses a store once the registry is closed.
var errShuttingDown = proto.Errorf(proto.CodeInternal, "the holder is shutting down")

func (e *entry) stop() {
	if e.timer != nil {
		e.timer.Stop()
	}
}

// expire removes e if it is still the entry held under name.
func (r *Registry) expire(name string, e *entry) {
	r.lockObs()
	r.mu.Lock()
	if r.entries[name] != e {
		r.mu.Unlock()
		r.flush()
		return
	}
	delete(r.entries, name)
	r.uncount(e)
	r.names.Delete(name)
	r.queueRemoved(e, "expire")
	n := len(r.entries)
	r.mu.Unlock()
	e.release()
	r.log.Info("entry expired", zap.String("op", "expire"), zap.String("name", name))
	r.flush()
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

// Take removes the entry held under name, if guard (nil: no vetting)
// allows it under the registry's write lock, and returns the registry's
// reference to it: the caller owns the descriptor from then on, and
// releasing the handle closes it. If it cannot be handed on, Restore puts
// it back. On error nothing is removed and nothing is closed.
func (r *Registry) Take(name string, guard EntryGuard) (Handle, error) {
	e, n, err := r.remove(name, guard, "take")
	if err != nil {
		return Handle{}, err
	}
	r.flush()
	r.changed(n)
	return Handle{e}, nil
}

// Restore puts back an entry removed by Take whose descriptor could not be
// delivered, if its name is still free, and reports whether it did. Either
// way it consumes h.
func (r *Registry) Restore(h Handle) bool {
	e := h.e
	name := e.info.Name
	r.lockObs()
	r.mu.Lock()
	if _, held := r.entries[name]; held || r.closed {
		r.mu.Unlock()
		r.flush()
		e.release()
		return false
	}
	if !e.info.ExpiresAt.IsZero() {
		left := time.Until(e.info.ExpiresAt)
		if left <= 0 {
			r.mu.Unlock()
			r.flush()
			e.release()
			return false
		}
		e.timer = time.AfterFunc(left, func() { r.expire(name, e) })
	}
	r.entries[name] = e
	r.byUID[e.info.UID]++
	r.names.ReplaceOrInsert(name)
	r.queueAdded(e, "restore")
	n := len(r.entries)
	r.mu.Unlock()
	r.flush()
	r.changed(n)
	return true
}

// Delete removes the entry held under name, if guard (nil: no vetting)
// allows it under the registry's write lock, and closes the holder's copy
// once no Get is sending it. On error nothing is removed and nothing is
// closed.
func (r *Registry) Delete(name string, guard EntryGuard) error {
	e, n, err := r.remove(name, guard, "delete")
	if err != nil {
		return err
	}
	e.release()
	r.flush()
	r.changed(n)
	return nil
}

// remove takes name out of the map, if guard (when not nil) allows it, and
// stops its timer; the caller owns the registry's reference to the returned
// entry, and must call flush if it succeeded.
func (r *Registry) remove(name string, guard EntryGuard, why string) (*entry, int, error) {
	r.lockObs()
	r.mu.Lock()
	e := r.entries[name]
	if e == nil {
		r.mu.Unlock()
		r.flush()
		return nil, 0, errNotHeld
	}
	if guard != nil {
		if err := guard(&e.info); err != nil {
			r.mu.Unlock()
			r.flush()
			return nil, 0, err
		}
	}
	delete(r.entries, name)
	r.uncount(e)
	r.names.Delete(name)
	r.queueRemoved(e, why)
	n := len(r.entries)
	r.mu.Unlock()
	e.stop()
	return e, n, nil
}

// ListOptions says which entries a page of List or Page shows. The zero
// value shows every entry from the first name on.
type ListOptions struct {
	// After is the cursor: the page starts with the first name that sorts
	// after it (the last name of the page before). Empty: the first name.
	After string

	// Prefixes, if not nil, limits the page to the names that start with
	// one of them, and a page visits only those: a peer that may see a few
	// names among many does not make the holder scan the others. Nil:
	// every name; empty but not nil: none.
	Prefixes []string

	// Visible, if set, is asked about each entry the page reaches, and
	// the entries it reports false for are hidden. It is called under the
	// registry's read lock and must not call the registry. Hidden entries
	// are skipped inside the page, so a page still fills up and the cursor
	// (the last name sent) still advances past them. Nil: all are shown.
	Visible func(*proto.Entry) bool
}

// namesDegree is the B-tree's degree: nodes of up to 63 names, a few cache
// lines of string headers each.
const namesDegree = 32

// ascendAfter calls fn with the names that sort after the name after, in
// order, until fn returns false. The caller holds the read lock.
func (r *Registry) ascendAfter(after string, fn func(name string) bool) {
	r.names.AscendGreaterOrEqual(after, func(name string) bool {
		return name == after || fn(name)
	})
}

// ascendIn is ascendAfter over the names that start with one of prefixes
// (nil: every name). Once the prefixes that extend another are dropped,
// the names under each form one run of the order, and the runs follow the
// order of their prefixes: each costs a seek, O(log n), plus its names.
func (r *Registry) ascendIn(after string, prefixes []string, fn func(name string) bool) {
	if prefixes == nil {
		r.ascendAfter(after, fn)
		return
	}
	ps := slices.Sorted(slices.Values(prefixes))
	kept := ps[:0]
	for _, p := range ps {
		if len(kept) == 0 || !strings.HasPrefix(p, kept[len(kept)-1]) {
			kept = append(kept, p)
		}
	}
	for _, p := range kept {
		stop := false
		r.names.AscendGreaterOrEqual(max(p, after), func(name string) bool {
			if !strings.HasPrefix(name, p) {
				return false
			}
			if name != after && !fn(name) {
				stop = true
				return false
			}
			return true
		})
		if stop {
			return
		}
	}
}

// List appends to dst the entries opts shows, in name order, as many as
// fit in one list reply, and reports whether more follow. TCP listeners
// come with their live accept queue.
func (r *Registry) List(dst []proto.Entry, opts ListOptions) ([]proto.Entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return page(r, dst, opts, -1, func(e *entry) (proto.Entry, int) {
		info := e.info
		if info.Listening && (info.Network == "tcp" || info.Network == "tcp6") {
			// The entry is in the map, so its descriptor is open.
			if q, b, err := sockfd.TCPQueue(e.fd); err == nil {
				info.HasQueue, info.Queued, info.Backlog = true, q, b
			}
		}
		return info, proto.EntrySize(&info)
	})
}

// page is the one walk behind List and Page: it appends to dst, in name
// order, what item makes of each entry opts shows (item also returns its
// size in a reply), while the page has room: at most limit items (no limit
// if limit < 0) whose sizes together fit in one reply
// (proto.ListPageFits). It reports whether more entries follow. The caller
// holds r.mu.
func page[T any](r *Registry, dst []T, opts ListOptions, limit int, item func(*entry) (T, int)) ([]T, bool) {
	size, n, more := 0, 0, false
	r.ascendIn(opts.After, opts.Prefixes, func(name string) bool {
		e := r.entries[name]
		if opts.Visible != nil && !opts.Visible(&e.info) {
			return true
		}
		if n == limit {
			more = true
			return false
		}
		it, sz := item(e)
		size += sz
		if !proto.ListPageFits(size) {
			more = true
			return false
		}
		dst = append(dst, it)
		n++
		return true
	})
	return dst, more
}

// Close closes every held descriptor (each once no Get is sending it) and
// makes later Stores fail. The observer is not told: closing the registry
// is the holder stopping, not its entries being deleted, and a copy kept
// elsewhere (systemd's file descriptor store) must outlive it.
func (r *Registry) Close() {
	r.mu.Lock()
	old := r.entries
	r.entries = make(map[string]*entry)
	clear(r.byUID)
	r.closed = true
	r.names.Clear(false)
	r.mu.Unlock()
	for _, e := range old {
		e.stop()
		e.release()
	}
	if len(old) > 0 {
		r.changed(0)
	}
}

// Held is one entry of a Snapshot: a reference to its descriptor, which
// the caller must release exactly once.
type Held struct {
	ID     uint64
	Entry  proto.Entry
	Handle Handle
}

// Snapshot returns a reference to every held entry whose name matches
// match (every entry if match is nil), in name order. Each Held keeps its
// descriptor open until its Handle is released, even if the entry is
// deleted meanwhile.
func (r *Registry) Snapshot(match func(name string) bool) []Held {
	r.mu.RLock()
	out := make([]Held, 0, len(r.entries))
	for name, e := range r.entries {
		if match != nil && !match(name) {
			continue
		}
		e.refs.Add(1)
		out = append(out, Held{ID: e.id, Entry: e.info, Handle: Handle{e}})
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Held) int { return strings.Compare(a.Entry.Name, b.Entry.Name) })
	return out
}

// Page returns references to the entries opts shows, in name order: at
// most limit of them, as many as fit in one reply (proto.ListPageFits),
// and reports whether more follow. It pages as List does; a dump sends
// the descriptors with the entries. The caller must release every Handle.
func (r *Registry) Page(opts ListOptions, limit int) ([]Handle, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out, more := page(r, nil, opts, limit, func(e *entry) (Handle, int) {
		return Handle{e}, proto.EntrySize(&e.info)
	})
	// Under the lock still: a delete cannot close a descriptor between the
	// walk and its reference.
	for _, h := range out {
		h.e.refs.Add(1)
	}
	return out, more
}
