package holder

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

var errGuard = errors.New("refused by the guard")

func TestGuardsSeeOwnerAndCounts(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newRegistry(t)
	var seen []string
	record := func(old *proto.Entry, after Counts) error {
		o := "none"
		if old != nil {
			o = old.Name + "@" + string(rune('0'+old.UID))
		}
		seen = append(seen, o, string(rune('0'+after.Total)), string(rune('0'+after.OwnerUID)))
		return nil
	}
	refuse := func(*proto.Entry, Counts) error { return errGuard }

	if _, err := storeNew(t, r, "a", StoreOptions{Owner: Owner{UID: 1}, Guard: record}); err != nil {
		t.Fatal(err)
	}
	if _, err := storeNew(t, r, "b", StoreOptions{Owner: Owner{UID: 2}, Guard: record}); err != nil {
		t.Fatal(err)
	}
	// Replacing uid 1's entry as uid 2: the total stays, uid 2 gains one.
	if _, err := storeNew(t, r, "a", StoreOptions{Owner: Owner{UID: 2}, Replace: true, Guard: record}); err != nil {
		t.Fatal(err)
	}
	want := []string{"none", "1", "1", "none", "2", "1", "a@1", "2", "2"}
	if !slices.Equal(seen, want) {
		t.Errorf("the guard saw %q, want %q", seen, want)
	}
	if r.HeldBy(1) != 0 || r.HeldBy(2) != 2 {
		t.Errorf("held by uid 1: %d, uid 2: %d; want 0 and 2", r.HeldBy(1), r.HeldBy(2))
	}
	// A refused store closes its descriptor and changes nothing.
	fd, err := storeNew(t, r, "c", StoreOptions{Owner: Owner{UID: 3}, Guard: refuse})
	if !errors.Is(err, errGuard) || !isClosed(fd) || r.Len() != 2 || r.HeldBy(3) != 0 {
		t.Errorf("refused store: %v, closed %v, %d held, %d by uid 3", err, isClosed(fd), r.Len(), r.HeldBy(3))
	}
	// A refused replace keeps the entry in place.
	if _, err := storeNew(t, r, "a", StoreOptions{Owner: Owner{UID: 3}, Replace: true, Guard: refuse}); !errors.Is(err, errGuard) {
		t.Errorf("refused replace: %v", err)
	}
	// Take and delete guards see the entry and can refuse.
	var owner uint32
	entryGuard := func(e *proto.Entry) error { owner = e.UID; return errGuard }
	if err := r.Delete("a", entryGuard); !errors.Is(err, errGuard) || owner != 2 || r.Len() != 2 {
		t.Errorf("refused delete: %v, owner seen %d, %d held", err, owner, r.Len())
	}
	if _, err := r.Take("b", entryGuard); !errors.Is(err, errGuard) || r.Len() != 2 {
		t.Errorf("refused take: %v, %d held", err, r.Len())
	}
	if err := r.Delete("none", entryGuard); !errors.Is(err, proto.ErrNotFound) {
		t.Errorf("delete of a name not held: %v, want ErrNotFound before the guard", err)
	}
	h, err := r.Take("b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.HeldBy(2) != 1 {
		t.Errorf("after a take uid 2 holds %d, want 1", r.HeldBy(2))
	}
	if !r.Restore(h) || r.HeldBy(2) != 2 {
		t.Errorf("after a restore uid 2 holds %d, want 2", r.HeldBy(2))
	}
	if err := r.Delete("a", nil); err != nil || r.HeldBy(2) != 1 {
		t.Errorf("delete: %v, uid 2 holds %d", err, r.HeldBy(2))
	}
}

func TestListPagesPastHiddenEntries(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newRegistry(t)
	// Enough entries with long names for several pages; only every third
	// is visible.
	const n = 1200
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%c-%s-%d", 'a'+i%26, strings.Repeat("x", 190), i)
		if _, err := storeNew(t, r, names[i], StoreOptions{Owner: Owner{UID: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	visible := func(e *proto.Entry) bool { return e.Name[len(e.Name)-1]%3 == 0 }
	var got []string
	after := ""
	pages := 0
	for {
		page, more := r.List(nil, ListOptions{After: after, Visible: visible})
		pages++
		for _, e := range page {
			if !visible(&e) {
				t.Fatalf("hidden entry %q listed", e.Name)
			}
			got = append(got, e.Name)
		}
		if !more {
			break
		}
		if len(page) == 0 {
			t.Fatal("an empty page says more follow: the cursor cannot advance")
		}
		after = page[len(page)-1].Name
	}
	var want []string
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	for _, name := range sorted {
		if name[len(name)-1]%3 == 0 {
			want = append(want, name)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("listed %d entries, want %d", len(got), len(want))
	}
	if pages < 2 {
		t.Errorf("%d page(s); want several", pages)
	}
}
