package holder

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
	"github.com/fdholder/fdholder/internal/testutil"
)

// recorder is an Observer that records the changes it sees and checks
// that it is never called twice at once and that an added descriptor is
// open during the call.
type recorder struct {
	t       testing.TB
	busy    atomic.Bool
	mu      sync.Mutex
	changes []string
	held    map[uint64]string // by ID: the entries added and not removed
	// fail makes the addition of the entries of these names fail.
	fail map[string]bool
}

func (r *recorder) Observe(c Change) error {
	if !r.busy.CompareAndSwap(false, true) {
		r.t.Error("Observe called while another call runs")
	}
	defer r.busy.Store(false)
	if c.Added {
		if _, err := sockfd.Inspect(c.FD); err != nil {
			r.t.Errorf("%s %q: the descriptor is not open during Observe: %v", c.Why, c.Entry.Name, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.Added && r.fail[c.Entry.Name] {
		r.changes = append(r.changes, "!"+c.Why+" "+c.Entry.Name)
		return errors.New("the copy failed")
	}
	verb := "-"
	if c.Added {
		verb = "+"
		r.held[c.ID] = c.Entry.Name
	} else {
		delete(r.held, c.ID)
	}
	r.changes = append(r.changes, verb+c.Why+" "+c.Entry.Name)
	return nil
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.changes
	r.changes = nil
	return out
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

func observed(t testing.TB) (*Registry, *recorder) {
	rec := &recorder{t: t, held: map[uint64]string{}}
	reg := NewRegistry(RegistryOptions{Logger: zaptest.NewLogger(t), Observer: rec})
	t.Cleanup(reg.Close)
	return reg, rec
}

// TestObserverSeesEveryChange runs every kind of change and checks what
// the observer saw, in order, by the time the operation returned.
func TestObserverSeesEveryChange(t *testing.T) {
	testutil.CheckLeaks(t)
	reg, rec := observed(t)
	steps := []struct {
		name string
		do   func(t *testing.T)
		want []string
	}{
		{"store", func(t *testing.T) { store(t, reg, "a", 0, false) }, []string{"+store a"}},
		{"refused store", func(t *testing.T) { store(t, reg, "a", 0, false) }, nil},
		{"replace: the new one first", func(t *testing.T) { store(t, reg, "a", 0, true) }, []string{"+replace a", "-replace a"}},
		{"delete", func(t *testing.T) { reg.Delete("a", nil) }, []string{"-delete a"}},
		{"take and restore", func(t *testing.T) {
			store(t, reg, "b", 0, false)
			h, err := reg.Take("b", nil)
			if err != nil {
				t.Fatal(err)
			}
			reg.Restore(h)
		}, []string{"+store b", "-take b", "+restore b"}},
		{"load", func(t *testing.T) {
			fd, _ := socketFD(t)
			if _, err := reg.Load(proto.Entry{Name: "c", StoredAt: time.Unix(5, 0)}, fd, StoreOptions{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"+load c"}},
		{"load of an expired entry", func(t *testing.T) {
			fd, _ := socketFD(t)
			if _, err := reg.Load(proto.Entry{Name: "d", StoredAt: time.Unix(5, 0), ExpiresAt: time.Unix(6, 0)}, fd, StoreOptions{}); err == nil {
				t.Fatal("an expired entry was loaded")
			}
		}, nil},
		{"expire", func(t *testing.T) {
			store(t, reg, "e", 10*time.Millisecond, false)
			deadline := time.Now().Add(10 * time.Second)
			for reg.Len() != 3 {
				if time.Now().After(deadline) {
					t.Fatal("no expiry")
				}
				time.Sleep(2 * time.Millisecond)
			}
			// The timer's goroutine removes the entry, then delivers the
			// change: wait for it.
			for rec.count() < 2 && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
		}, []string{"+store e", "-expire e"}},
		{"close is not a change", func(t *testing.T) { reg.Close() }, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do(t)
			if got := rec.take(); !slices.Equal(got, s.want) {
				t.Errorf("observed %q, want %q", got, s.want)
			}
		})
	}
}

// TestObserverOrderUnderRace stores and deletes the same names from many
// goroutines: the observer's view (the IDs added and not removed) ends up
// exactly the registry's entries.
func TestObserverOrderUnderRace(t *testing.T) {
	testutil.CheckLeaks(t)
	reg, rec := observed(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				name := fmt.Sprintf("n%d", i%4)
				switch (g + i) % 4 {
				case 0, 1:
					store(t, reg, name, 0, (g+i)%2 == 0)
				case 2:
					reg.Delete(name, nil)
				default:
					if h, err := reg.Take(name, nil); err == nil {
						h.Release()
					}
				}
			}
		}()
	}
	wg.Wait()
	var want []string
	for _, h := range reg.Snapshot(nil) {
		want = append(want, fmt.Sprintf("%d %s", h.ID, h.Entry.Name))
		h.Handle.Release()
	}
	var got []string
	for id, name := range rec.held {
		got = append(got, fmt.Sprintf("%d %s", id, name))
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("observer holds %q, registry %q", got, want)
	}
}

// TestObserverFailureRefusesTheStore: a store or load whose copy cannot be
// made fails, and nothing changes: a new name stays free, a replaced entry
// stays held as it was (issue 8: a store is acknowledged only once durable).
func TestObserverFailureRefusesTheStore(t *testing.T) {
	testutil.CheckLeaks(t)
	reg, rec := observed(t)
	rec.fail = map[string]bool{}
	store(t, reg, "kept", 0, false)
	rec.take()
	before := reg.Snapshot(nil)
	for _, h := range before {
		h.Handle.Release()
	}
	rec.mu.Lock()
	rec.fail["new"], rec.fail["kept"] = true, true
	rec.mu.Unlock()
	tests := []struct {
		name string
		do   func() error
		want []string
	}{
		{"store", func() error { _, err := store(t, reg, "new", 0, false); return err }, []string{"!store new"}},
		{"replace", func() error { _, err := store(t, reg, "kept", 0, true); return err }, []string{"!replace kept"}},
		{"load", func() error {
			fd, _ := socketFD(t)
			_, err := reg.Load(proto.Entry{Name: "new", StoredAt: time.Unix(5, 0)}, fd, StoreOptions{})
			return err
		}, []string{"!load new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if proto.CodeOf(err) != proto.CodeInternal || !strings.Contains(err.Error(), "the copy failed") {
				t.Errorf("err = %v, want an internal error naming the failed copy", err)
			}
			if got := rec.take(); !slices.Equal(got, tt.want) {
				t.Errorf("observed %q, want %q", got, tt.want)
			}
			after := reg.Snapshot(nil)
			for _, h := range after {
				h.Handle.Release()
			}
			if len(after) != 1 || after[0].ID != before[0].ID {
				t.Errorf("held %+v after a failed copy, want only the entry from before", after)
			}
		})
	}
}
