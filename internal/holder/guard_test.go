package holder

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
	"github.com/fdholder/fdholder/internal/testutil"
)

// storeAs stores a new socket under name for owner uid, through guard.
func storeAs(t testing.TB, r *Registry, name string, uid uint32, replace bool, guard StoreGuard) (*sockfd.FD, error) {
	t.Helper()
	fd, _ := socketFD(t)
	info, err := sockfd.Inspect(fd)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.StoreGuarded(name, fd, info, Owner{UID: uid}, 0, replace, guard)
	return fd, err
}

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

	if _, err := storeAs(t, r, "a", 1, false, record); err != nil {
		t.Fatal(err)
	}
	if _, err := storeAs(t, r, "b", 2, false, record); err != nil {
		t.Fatal(err)
	}
	// Replacing uid 1's entry as uid 2: the total stays, uid 2 gains one.
	if _, err := storeAs(t, r, "a", 2, true, record); err != nil {
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
	fd, err := storeAs(t, r, "c", 3, false, refuse)
	if !errors.Is(err, errGuard) || !isClosed(fd) || r.Len() != 2 || r.HeldBy(3) != 0 {
		t.Errorf("refused store: %v, closed %v, %d held, %d by uid 3", err, isClosed(fd), r.Len(), r.HeldBy(3))
	}
	// A refused replace keeps the entry in place.
	if _, err := storeAs(t, r, "a", 3, true, refuse); !errors.Is(err, errGuard) {
		t.Errorf("refused replace: %v", err)
	}
	// Take and delete guards see the entry and can refuse.
	var owner uint32
	entryGuard := func(e *proto.Entry) error { owner = e.UID; return errGuard }
	if err := r.DeleteGuarded("a", entryGuard); !errors.Is(err, errGuard) || owner != 2 || r.Len() != 2 {
		t.Errorf("refused delete: %v, owner seen %d, %d held", err, owner, r.Len())
	}
	if _, err := r.TakeGuarded("b", entryGuard); !errors.Is(err, errGuard) || r.Len() != 2 {
		t.Errorf("refused take: %v, %d held", err, r.Len())
	}
	if err := r.DeleteGuarded("none", entryGuard); !errors.Is(err, proto.ErrNotFound) {
		t.Errorf("delete of a name not held: %v, want ErrNotFound before the guard", err)
	}
	h, err := r.TakeGuarded("b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.HeldBy(2) != 1 {
		t.Errorf("after a take uid 2 holds %d, want 1", r.HeldBy(2))
	}
	if !r.Restore(h) || r.HeldBy(2) != 2 {
		t.Errorf("after a restore uid 2 holds %d, want 2", r.HeldBy(2))
	}
	if err := r.DeleteGuarded("a", nil); err != nil || r.HeldBy(2) != 1 {
		t.Errorf("delete: %v, uid 2 holds %d", err, r.HeldBy(2))
	}
}

func TestListFilteredPagesPastHiddenEntries(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newRegistry(t)
	// Enough entries with long names for several pages; only every third
	// is visible.
	const n = 1200
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%c-%s-%d", 'a'+i%26, strings.Repeat("x", 190), i)
		if _, err := storeAs(t, r, names[i], 1, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	visible := func(e *proto.Entry) bool { return e.Name[len(e.Name)-1]%3 == 0 }
	var got []string
	after := ""
	pages := 0
	for {
		page, more := r.ListFiltered(nil, after, visible)
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
