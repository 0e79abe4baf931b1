package holder

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
	"github.com/fdholder/fdholder/internal/testutil"
)

// socketFD returns an FD owning a duplicate of a new TCP listener's socket,
// and the listener's address. The listener itself is closed at the end of
// the test; the FD is the caller's.
func socketFD(t testing.TB) (*sockfd.FD, string) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rc, _ := ln.SyscallConn()
	var n int
	var derr error
	rc.Control(func(fd uintptr) { n, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if derr != nil {
		t.Fatal(derr)
	}
	return sockfd.New(n), ln.Addr().String()
}

// storeNew stores a new socket under name as opts says, with opts.Info
// filled in from the socket.
func storeNew(t testing.TB, r *Registry, name string, opts StoreOptions) (*sockfd.FD, error) {
	t.Helper()
	fd, _ := socketFD(t)
	info, err := sockfd.Inspect(fd)
	if err != nil {
		t.Fatal(err)
	}
	opts.Info = info
	_, err = r.Store(name, fd, opts)
	return fd, err
}

// store stores a new socket under name for uid 1, gid 2, pid 3.
func store(t testing.TB, r *Registry, name string, ttl time.Duration, replace bool) (*sockfd.FD, error) {
	t.Helper()
	return storeNew(t, r, name, StoreOptions{Owner: Owner{UID: 1, GID: 2, PID: 3}, TTL: ttl, Replace: replace})
}

// isClosed reports whether the FD's descriptor was closed by its owner.
func isClosed(fd *sockfd.FD) bool { return fd.Sysfd() == -1 }

func newRegistry(t testing.TB) *Registry {
	r := NewRegistry(RegistryOptions{Logger: zaptest.NewLogger(t)})
	t.Cleanup(r.Close)
	return r
}

func TestRegistryStoreReplace(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newRegistry(t)
	first, err := store(t, r, "web", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	second, err := store(t, r, "web", 0, false)
	if !errors.Is(err, proto.ErrExists) {
		t.Fatalf("store of a held name: %v, want ErrExists", err)
	}
	if !isClosed(second) {
		t.Error("a refused store did not close its descriptor")
	}
	if isClosed(first) {
		t.Fatal("a refused store closed the held descriptor")
	}
	// A replace while a get holds the old copy: the old copy stays open
	// until the get releases it.
	h, err := r.Get("web")
	if err != nil {
		t.Fatal(err)
	}
	third, err := store(t, r, "web", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if isClosed(first) {
		t.Fatal("replace closed the old copy while a get was sending it")
	}
	h.Release()
	if !isClosed(first) {
		t.Error("the replaced copy was not closed after the last get released it")
	}
	h, _ = r.Get("web")
	if h.FD() != third {
		t.Error("get after replace does not return the new descriptor")
	}
	h.Release()
	if r.Len() != 1 {
		t.Errorf("Len = %d, want 1", r.Len())
	}
}

func TestRegistryTakeDeleteRestore(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newRegistry(t)
	fd, _ := store(t, r, "a", 0, false)
	h, err := r.Take("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get("a"); !errors.Is(err, proto.ErrNotFound) {
		t.Errorf("get after take: %v", err)
	}
	if !r.Restore(h) {
		t.Fatal("restore of a free name failed")
	}
	if isClosed(fd) {
		t.Fatal("restore closed the descriptor")
	}
	h, err = r.Take("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	store(t, r, "a", 0, false) // the name is taken again meanwhile
	if r.Restore(h) {
		t.Error("restore over a held name succeeded")
	}
	if !isClosed(fd) {
		t.Error("a refused restore did not close the taken descriptor")
	}
	if err := r.Delete("a", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete("a", nil); !errors.Is(err, proto.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

// TestLoadOptions: Load shares Store's options, but the owner, the socket's
// description and the expiry are the entry's to say; options that set them
// are refused, and the descriptor is closed all the same.
func TestLoadOptions(t *testing.T) {
	testutil.CheckLeaks(t)
	tests := []struct {
		name    string
		opts    StoreOptions
		held    bool // a "web" is held before the load
		wantErr bool
	}{
		{name: "zero", opts: StoreOptions{}},
		{name: "name held", held: true, wantErr: true},
		{name: "replace", opts: StoreOptions{Replace: true}, held: true},
		{name: "info", opts: StoreOptions{Info: sockfd.Info{Network: "tcp"}}, wantErr: true},
		{name: "owner", opts: StoreOptions{Owner: Owner{UID: 7}}, wantErr: true},
		{name: "ttl", opts: StoreOptions{TTL: time.Hour}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRegistry(t)
			if tt.held {
				store(t, r, "web", 0, false)
			}
			fd, _ := socketFD(t)
			in := proto.Entry{Name: "web", UID: 4, StoredAt: time.Unix(5, 0)}
			e, err := r.Load(in, fd, tt.opts)
			if tt.wantErr {
				if err == nil || !isClosed(fd) {
					t.Fatalf("load = %v, descriptor closed %v; want an error and the descriptor closed", err, isClosed(fd))
				}
				return
			}
			if err != nil || e.UID != 4 || !e.StoredAt.Equal(in.StoredAt) {
				t.Fatalf("load = %+v, %v; want the entry's own owner and time", e, err)
			}
			h, err := r.Get("web")
			if err != nil || h.FD() != fd {
				t.Fatalf("get after load: %v; want the loaded descriptor", err)
			}
			h.Release()
		})
	}
}

func TestRegistryExpiry(t *testing.T) {
	testutil.CheckLeaks(t)
	counts := make(chan int, 10)
	r := NewRegistry(RegistryOptions{Logger: zaptest.NewLogger(t), OnChange: func(n int) { counts <- n }})
	defer r.Close()
	keep, _ := store(t, r, "long", time.Hour, false)
	fd, _ := socketFD(t)
	info, err := sockfd.Inspect(fd)
	if err != nil {
		t.Fatal(err)
	}
	// "short" may expire before a list on a busy machine: its expiry is
	// checked on the entry Store returns, and the list's on "long".
	e, err := r.Store("short", fd, StoreOptions{Info: info, Owner: Owner{UID: 1, GID: 2, PID: 3}, TTL: 20 * time.Millisecond})
	if err != nil || e.ExpiresAt.Sub(e.StoredAt) != 20*time.Millisecond {
		t.Fatalf("store = %+v, %v; want an entry expiring 20ms after it was stored", e, err)
	}
	page, _ := r.List(nil, ListOptions{})
	if len(page) == 0 || page[0].Name != "long" || page[0].ExpiresAt.Sub(page[0].StoredAt) != time.Hour {
		t.Fatalf("list = %+v", page)
	}
	if n := <-counts; n != 1 {
		t.Fatalf("after the first store OnChange says %d entries, want 1", n)
	}
	// Then 2 for "short" and 1 for its expiry, in either order: both calls
	// are made outside the lock, and on a busy machine the 20ms timer can
	// fire and report the expiry before Store makes its own call.
	var got []int
	for range 2 {
		select {
		case n := <-counts:
			got = append(got, n)
		case <-time.After(10 * time.Second):
			t.Fatalf("OnChange counts %v: the entry did not expire", got)
		}
	}
	if slices.Sort(got); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("OnChange counts %v after the store and the expiry, want 2 and 1", got)
	}
	if !isClosed(fd) {
		t.Error("the expired entry's descriptor is open")
	}
	if _, err := r.Get("short"); !errors.Is(err, proto.ErrNotFound) {
		t.Errorf("get of an expired entry: %v", err)
	}
	if isClosed(keep) {
		t.Error("an unexpired entry was closed")
	}
}

func TestRegistryListOrderAndQueue(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newRegistry(t)
	names := []string{"b", "a", "c/1", "c", "B"}
	for _, n := range names {
		store(t, r, n, 0, false)
	}
	page, more := r.List(nil, ListOptions{})
	if more {
		t.Error("more = true for five entries")
	}
	var got []string
	for _, e := range page {
		got = append(got, e.Name)
		if !e.HasQueue || e.Backlog == 0 || e.Network != "tcp" || !e.Listening {
			t.Errorf("entry %+v lacks its TCP listener facts", e)
		}
	}
	if fmt.Sprint(got) != "[B a b c c/1]" {
		t.Errorf("order %v", got)
	}
	page, _ = r.List(nil, ListOptions{After: "b"})
	if len(page) != 2 || page[0].Name != "c" {
		t.Errorf("page after b: %+v", page)
	}
	r.Delete("c", nil)
	page, _ = r.List(nil, ListOptions{After: "b"})
	if len(page) != 1 || page[0].Name != "c/1" {
		t.Errorf("page after b, with c deleted: %+v", page)
	}
}

// TestRegistryConcurrent runs store, replace, get, take and delete of the
// same few names from many goroutines; the race detector and the leak
// check judge it, and every descriptor must end up closed exactly once.
func TestRegistryConcurrent(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newRegistry(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				name := fmt.Sprintf("n%d", i%3)
				switch (g + i) % 5 {
				case 0:
					store(t, r, name, 0, false)
				case 1:
					store(t, r, name, 0, true)
				case 2:
					if h, err := r.Get(name); err == nil {
						h.Release()
					}
				case 3:
					if h, err := r.Take(name, nil); err == nil {
						h.Release()
					}
				case 4:
					r.Delete(name, nil)
				}
			}
		}()
	}
	wg.Wait()
}

// TestListAfterChangeNeedsNoWriteLock (issue 8, defect 9): the first list
// after a change takes only the read lock. It used to re-sort every name
// under the write lock, so it waited here for the reader holding the lock.
func TestListAfterChangeNeedsNoWriteLock(t *testing.T) {
	testutil.CheckLeaks(t)
	reg := NewRegistry(RegistryOptions{})
	defer reg.Close()
	for _, name := range []string{"b", "c", "a"} {
		store(t, reg, name, 0, false)
	}
	reg.Delete("c", nil)
	reg.mu.RLock() // a reader in the middle of a page
	done := make(chan []proto.Entry, 1)
	go func() {
		page, _ := reg.List(nil, ListOptions{})
		done <- page
	}()
	select {
	case page := <-done:
		reg.mu.RUnlock()
		if len(page) != 2 || page[0].Name != "a" || page[1].Name != "b" {
			t.Errorf("list = %+v, want a and b", page)
		}
	case <-time.After(10 * time.Second):
		reg.mu.RUnlock()
		<-done
		t.Fatal("the list after a change waited for the write lock")
	}
}

// TestOpenFDs: the count of open descriptors the reserve uses is the
// number of entries in /proc/self/fd (less the one reading it).
func TestOpenFDs(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, extra := range []int{0, 50} {
		fds := make([]*sockfd.FD, extra)
		for i := range fds {
			fds[i], _ = socketFD(t)
		}
		n, err := openFDs()
		ents, derr := os.ReadDir("/proc/self/fd")
		if err != nil || derr != nil || n != len(ents)-1 {
			t.Errorf("openFDs() = %d, %v; /proc/self/fd lists %d (%v) with one reading it", n, err, len(ents), derr)
		}
		sockfd.CloseAll(fds)
	}
}

// TestListVisitsOnlyThePrefixes (issue 8, defect 9): a list page for a
// peer whose access covers a few names visits those, not the thousands of
// others, and pages through them in order.
func TestListVisitsOnlyThePrefixes(t *testing.T) {
	testutil.CheckLeaks(t)
	reg := NewRegistry(RegistryOptions{})
	defer reg.Close()
	fd, _ := socketFD(t)
	defer fd.Close()
	info, err := sockfd.Inspect(fd)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 2000 {
		names = append(names, fmt.Sprintf("hidden/%04d", i))
	}
	names = append(names, "pub/a", "pub/b", "www/x", "www/y/z", "pubx")
	for _, name := range names {
		d, err := fd.Dup()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Store(name, d, StoreOptions{Info: info}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		after    string
		prefixes []string
		want     string
	}{
		{name: "two prefixes", prefixes: []string{"www/", "pub/"}, want: "pub/a pub/b www/x www/y/z"},
		{name: "a prefix that extends another", prefixes: []string{"pub/", "pub/b", "www/y"}, want: "pub/a pub/b www/y/z"},
		{name: "after a cursor", after: "pub/a", prefixes: []string{"pub/", "www/"}, want: "pub/b www/x www/y/z"},
		{name: "a cursor inside the hidden names", after: "hidden/0500", prefixes: []string{"pub"}, want: "pub/a pub/b pubx"},
		{name: "none", prefixes: []string{}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			visited := 0
			opts := ListOptions{After: tt.after, Prefixes: tt.prefixes, Visible: func(*proto.Entry) bool { visited++; return true }}
			page, more := reg.List(nil, opts)
			var got []string
			for _, e := range page {
				got = append(got, e.Name)
			}
			if strings.Join(got, " ") != tt.want || more {
				t.Errorf("page %q (more %v), want %q", got, more, tt.want)
			}
			if visited != len(page) {
				t.Errorf("visited %d entries for a page of %d", visited, len(page))
			}
			// A dump page (Page) visits the same names.
			visited = 0
			held, more := reg.Page(opts, proto.MaxBatchEntries)
			got = got[:0]
			for _, h := range held {
				got = append(got, h.Entry().Name)
				h.Release()
			}
			if strings.Join(got, " ") != tt.want || more || visited != len(held) {
				t.Errorf("dump page %q (more %v) after visiting %d, want %q", got, more, visited, tt.want)
			}
		})
	}
}
