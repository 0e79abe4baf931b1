package fdstore

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sdnotify"
	"github.com/fdholder/fdholder/internal/sockfd"
	"github.com/fdholder/fdholder/internal/testutil"
)

// store is the receiving end of $NOTIFY_SOCKET as systemd 252 implements
// FDSTORE=1 and FDSTOREREMOVE=1 (src/core/service.c): a descriptor already
// stored (the same open file, whatever its name) is not stored again, and
// FDSTOREREMOVE=1 drops every descriptor of that name. It reads real
// messages from a real datagram socket.
type store struct {
	t    testing.TB
	conn *net.UnixConn
	path string

	mu         sync.Mutex
	fds        []stored
	msgs       int
	markers    int    // sync markers sent
	lastMarker string // the last one handled
	done       chan struct{}
	close      sync.Once
}

type stored struct {
	name string
	fd   int
}

func newStore(t testing.TB) *store {
	t.Helper()
	path := filepath.Join(testutil.ShortDir(t), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &store{t: t, conn: conn, path: path, done: make(chan struct{})}
	go s.loop()
	t.Cleanup(s.shutdown)
	return s
}

func (s *store) loop() {
	defer close(s.done)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(proto.MaxMessageFDs*4))
	for {
		n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		var fds []int
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				r, _ := unix.ParseUnixRights(&m)
				fds = append(fds, r...)
			}
		}
		s.handle(string(buf[:n]), fds)
	}
}

func (s *store) handle(msg string, fds []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs++
	vars := map[string]string{}
	for _, line := range strings.Split(msg, "\n") {
		k, v, _ := strings.Cut(line, "=")
		vars[k] = v
	}
	switch {
	case vars["FDSTORE"] == "1":
		if vars["FDPOLL"] != "0" {
			s.t.Errorf("store without FDPOLL=0: %q", msg)
		}
	next:
		for _, fd := range fds {
			for _, have := range s.fds {
				if sameFile(have.fd, fd) {
					unix.Close(fd) // already stored
					continue next
				}
			}
			s.fds = append(s.fds, stored{name: vars["FDNAME"], fd: fd})
		}
	case vars["FDSTOREREMOVE"] == "1" && strings.HasPrefix(vars["FDNAME"], "sync-marker-"):
		s.lastMarker = vars["FDNAME"]
	case vars["FDSTOREREMOVE"] == "1":
		for _, fd := range fds {
			unix.Close(fd)
		}
		s.fds = slices.DeleteFunc(s.fds, func(st stored) bool {
			if st.name == vars["FDNAME"] {
				unix.Close(st.fd)
				return true
			}
			return false
		})
	default:
		for _, fd := range fds {
			unix.Close(fd)
		}
		s.t.Errorf("unexpected notification %q", msg)
	}
}

// sameFile reports whether a and b are the same file, by device and inode
// (systemd's same_fd uses kcmp(2) KCMP_FILE first; for sockets, whose
// kernel object has a single file, the two agree). The device matters: a
// memfd's inode number can equal a socket's.
func sameFile(a, b int) bool {
	var sa, sb unix.Stat_t
	if unix.Fstat(a, &sa) != nil || unix.Fstat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// passed hands the store's descriptors over, as systemd passes them at the
// next start (duplicates: the store keeps its own).
func (s *store) passed() []Passed {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Passed, len(s.fds))
	for i, st := range s.fds {
		d, err := unix.FcntlInt(uintptr(st.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			s.t.Fatal(err)
		}
		out[i] = Passed{FD: sockfd.New(d), Name: st.name}
	}
	return out
}

func (s *store) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, st := range s.fds {
		out = append(out, st.name)
	}
	slices.Sort(out)
	return out
}

// sync waits until the store has handled every message sent so far: a
// datagram socket delivers in order, so once a marker sent now has been
// handled, so has everything before it.
func (s *store) sync(n *sdnotify.Socket) {
	s.t.Helper()
	s.mu.Lock()
	s.markers++
	marker := fmt.Sprintf("sync-marker-%d", s.markers)
	s.mu.Unlock()
	if err := n.Send("FDSTOREREMOVE=1\nFDNAME=" + marker); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		seen := s.lastMarker == marker
		s.mu.Unlock()
		if seen {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatal("the store did not handle the notifications")
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *store) shutdown() {
	s.close.Do(func() {
		s.conn.Close()
		<-s.done
		s.mu.Lock()
		for _, st := range s.fds {
			unix.Close(st.fd)
		}
		s.fds = nil
		s.mu.Unlock()
	})
}

// mirrored returns a registry whose changes a Mirror copies into a new
// store.
func mirrored(t testing.TB) (*holder.Registry, *store, *sdnotify.Socket) {
	t.Helper()
	st := newStore(t)
	n, err := sdnotify.NewSocket(st.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	reg := holder.NewRegistry(holder.RegistryOptions{Logger: zaptest.NewLogger(t), Observer: NewMirror(n, zaptest.NewLogger(t), 1)})
	t.Cleanup(reg.Close)
	return reg, st, n
}

func tcpListener(t testing.TB) (*sockfd.FD, sockfd.Info) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	f := sockfd.New(fd)
	info, err := sockfd.Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	return f, info
}

// recovered sorts what the store holds and closes the recovered entries'
// descriptors, returning their metadata and inodes by name.
func recovered(t testing.TB, st *store) (Recovered, map[string]Meta) {
	t.Helper()
	rec := Sort(zaptest.NewLogger(t), st.passed(), time.Now())
	got := map[string]Meta{}
	for _, e := range rec.Entries {
		got[e.Entry.Name] = e.Meta
		e.FD.Close()
	}
	for _, f := range rec.Controls {
		f.Close()
	}
	return rec, got
}

// want returns the registry's entries with their inodes, by name.
func want(t testing.TB, reg *holder.Registry) map[string]Meta {
	t.Helper()
	out := map[string]Meta{}
	for _, h := range reg.Snapshot(nil) {
		ino, err := Inode(h.Handle.FD())
		if err != nil {
			t.Fatal(err)
		}
		out[h.Entry.Name] = Meta{Entry: h.Entry, Inode: ino}
		h.Handle.Release()
	}
	return out
}

// TestMirrorRoundTrip changes a registry in every way and checks after each
// step that recovering from the store gives back exactly the registry's
// entries, with their metadata and sockets, and that the store holds
// nothing else.
func TestMirrorRoundTrip(t *testing.T) {
	testutil.CheckLeaks(t)
	reg, st, n := mirrored(t)
	owner := holder.Owner{UID: 1000, GID: 100, PID: 4242}
	steps := []struct {
		name string
		do   func(t *testing.T)
	}{
		{"store", func(t *testing.T) {
			fd, info := tcpListener(t)
			if _, err := reg.Store("web", fd, holder.StoreOptions{Info: info, Owner: owner}); err != nil {
				t.Fatal(err)
			}
		}},
		{"store with a ttl", func(t *testing.T) {
			fd, info := tcpListener(t)
			if _, err := reg.Store("api/v1@x+y", fd, holder.StoreOptions{Info: info, Owner: owner, TTL: time.Hour}); err != nil {
				t.Fatal(err)
			}
		}},
		{"the same socket under a second name", func(t *testing.T) {
			h, err := reg.Get("web")
			if err != nil {
				t.Fatal(err)
			}
			dup, err := h.FD().Dup()
			h.Release()
			if err != nil {
				t.Fatal(err)
			}
			info, _ := sockfd.Inspect(dup)
			if _, err := reg.Store("web-alias", dup, holder.StoreOptions{Info: info, Owner: owner}); err != nil {
				t.Fatal(err)
			}
		}},
		{"replace", func(t *testing.T) {
			fd, info := tcpListener(t)
			if _, err := reg.Store("web", fd, holder.StoreOptions{Info: info, Owner: holder.Owner{UID: 1, GID: 2, PID: 3}, Replace: true}); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete the alias, whose socket is no longer shared", func(t *testing.T) {
			if err := reg.Delete("web-alias", nil); err != nil {
				t.Fatal(err)
			}
		}},
		{"take", func(t *testing.T) {
			h, err := reg.Take("api/v1@x+y", nil)
			if err != nil {
				t.Fatal(err)
			}
			h.Release()
		}},
		{"expire", func(t *testing.T) {
			fd, info := tcpListener(t)
			if _, err := reg.Store("short", fd, holder.StoreOptions{Info: info, Owner: owner, TTL: 20 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for reg.Len() != 1 {
				if time.Now().After(deadline) {
					t.Fatal("the entry did not expire")
				}
				time.Sleep(5 * time.Millisecond)
			}
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.do(t)
			st.sync(n)
			rec, got := recovered(t, st)
			if w := want(t, reg); !reflect.DeepEqual(got, w) {
				t.Errorf("recovered:\n got %+v\nwant %+v", got, w)
			}
			if rec.Lost+rec.Dropped+rec.Expired != 0 {
				t.Errorf("recovery dropped entries: %+v", rec)
			}
			if len(rec.Stale) != 0 {
				t.Errorf("stale in the store: %q", rec.Stale)
			}
			if len(st.names()) != 2*reg.Len()-countShared(t, reg) {
				t.Errorf("the store holds %v for %d entries", st.names(), reg.Len())
			}
		})
	}
}

// countShared counts the entries whose socket another entry holds too.
func countShared(t testing.TB, reg *holder.Registry) int {
	seen := map[uint64]bool{}
	n := 0
	for _, m := range want(t, reg) {
		if seen[m.Inode] {
			n++
		}
		seen[m.Inode] = true
	}
	return n
}

// TestMirrorStoreRacesDelete stores and deletes the same names from many
// goroutines at once: whatever order the registry settles in, the store
// ends up holding exactly its entries.
func TestMirrorStoreRacesDelete(t *testing.T) {
	testutil.CheckLeaks(t)
	reg, st, n := mirrored(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				name := fmt.Sprintf("n%d", i%5)
				switch (g + i) % 3 {
				case 0, 1:
					fd, info := tcpListener(t)
					reg.Store(name, fd, holder.StoreOptions{Info: info, Owner: holder.Owner{PID: int32(g)}, Replace: (g+i)%2 == 0})
				default:
					reg.Delete(name, nil)
				}
			}
		}()
	}
	wg.Wait()
	st.sync(n)
	rec, got := recovered(t, st)
	if w := want(t, reg); !reflect.DeepEqual(got, w) {
		brief := func(m map[string]Meta) string {
			var b strings.Builder
			for _, k := range slices.Sorted(maps.Keys(m)) {
				fmt.Fprintf(&b, "%s:pid%d/ino%d/%v ", k, m[k].Entry.PID, m[k].Inode, m[k].Entry.StoredAt.Format("05.000000"))
			}
			return b.String()
		}
		t.Errorf("after the race, recovered:\n got %s\nwant %s\nstore %q, lost %d dropped %d", brief(got), brief(w), st.names(), rec.Lost, rec.Dropped)
	}
}

// TestSort feeds Sort what a store can hold after a crash at any point of
// the mirror's work, and checks what it keeps, drops and closes.
func TestSort(t *testing.T) {
	now := time.Now()
	// socket returns a TCP listener's descriptor and inode.
	socket := func(t *testing.T) (*sockfd.FD, uint64) {
		fd, _ := tcpListener(t)
		ino, err := Inode(fd)
		if err != nil {
			t.Fatal(err)
		}
		return fd, ino
	}
	meta := func(t *testing.T, name string, ino uint64, expires time.Time) *sockfd.FD {
		m := Meta{Inode: ino, Entry: proto.Entry{Name: name, Network: "tcp", StoredAt: now.Add(-time.Minute), ExpiresAt: expires}}
		var buf []byte
		f, err := metaFile(&m, &buf)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name  string
		items func(t *testing.T) []Passed
		keep  []string // entry names recovered
		// counts in Recovered
		expired, lost, dropped, controls, stale int
	}{
		{name: "nothing", items: func(t *testing.T) []Passed { return nil }},
		{name: "an entry", keep: []string{"web"}, items: func(t *testing.T) []Passed {
			fd, ino := socket(t)
			return []Passed{{FD: fd, Name: SocketName(ino)}, {FD: meta(t, "web", ino, time.Time{}), Name: MetaName(7)}}
		}},
		{name: "two entries on one socket", keep: []string{"a", "b"}, items: func(t *testing.T) []Passed {
			fd, ino := socket(t)
			return []Passed{{FD: meta(t, "b", ino, time.Time{}), Name: MetaName(2)}, {FD: fd, Name: SocketName(ino)}, {FD: meta(t, "a", ino, time.Time{}), Name: MetaName(1)}}
		}},
		{name: "a replace cut short: the newer metadata wins", keep: []string{"web"}, dropped: 1, stale: 2, items: func(t *testing.T) []Passed {
			fd1, ino1 := socket(t)
			fd2, ino2 := socket(t)
			return []Passed{{FD: fd1, Name: SocketName(ino1)}, {FD: meta(t, "web", ino1, time.Time{}), Name: MetaName(35)},
				{FD: fd2, Name: SocketName(ino2)}, {FD: meta(t, "web", ino2, time.Time{}), Name: MetaName(36)}}
		}},
		{name: "a store cut short: a socket without metadata", stale: 1, items: func(t *testing.T) []Passed {
			fd, ino := socket(t)
			return []Passed{{FD: fd, Name: SocketName(ino)}}
		}},
		{name: "metadata without its socket", lost: 1, stale: 1, items: func(t *testing.T) []Passed {
			return []Passed{{FD: meta(t, "gone", 12345, time.Time{}), Name: MetaName(1)}}
		}},
		{name: "expired while down", expired: 1, stale: 2, items: func(t *testing.T) []Passed {
			fd, ino := socket(t)
			return []Passed{{FD: fd, Name: SocketName(ino)}, {FD: meta(t, "old", ino, now.Add(-time.Second)), Name: MetaName(1)}}
		}},
		{name: "still to expire", keep: []string{"ttl"}, items: func(t *testing.T) []Passed {
			fd, ino := socket(t)
			return []Passed{{FD: fd, Name: SocketName(ino)}, {FD: meta(t, "ttl", ino, now.Add(time.Hour)), Name: MetaName(1)}}
		}},
		{name: "unreadable metadata", dropped: 1, stale: 2, items: func(t *testing.T) []Passed {
			fd, ino := socket(t)
			bad, err := unix.MemfdCreate("bad", unix.MFD_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			unix.Write(bad, []byte("FHMD\x09garbage"))
			return []Passed{{FD: fd, Name: SocketName(ino)}, {FD: sockfd.New(bad), Name: MetaName(1)}}
		}},
		{name: "a socket under another socket's name", stale: 1, items: func(t *testing.T) []Passed {
			fd, ino := socket(t)
			return []Passed{{FD: fd, Name: SocketName(ino + 1)}}
		}},
		{name: "inline data under names that are not metadata's", stale: 2, items: func(t *testing.T) []Passed {
			return []Passed{{Name: SocketName(5), Data: []byte("x")}, {Name: ControlName, Data: []byte("y")}}
		}},
		{name: "the control socket and something unknown", controls: 1, stale: 1, items: func(t *testing.T) []Passed {
			ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: filepath.Join(testutil.ShortDir(t), "c"), Net: "unixpacket"})
			if err != nil {
				t.Fatal(err)
			}
			f, err := ln.File()
			ln.Close()
			if err != nil {
				t.Fatal(err)
			}
			ctl, err := unix.Dup(int(f.Fd()))
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			unix.Close(p[1])
			return []Passed{{FD: sockfd.New(ctl), Name: ControlName}, {FD: sockfd.New(p[0]), Name: "mystery"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			rec := Sort(zaptest.NewLogger(t), tt.items(t), now)
			var names []string
			for _, e := range rec.Entries {
				names = append(names, e.Entry.Name)
				if ino, err := Inode(e.FD); err != nil || ino != e.Inode {
					t.Errorf("entry %q: descriptor inode %d (%v), metadata says %d", e.Entry.Name, ino, err, e.Inode)
				}
				e.FD.Close()
			}
			for _, f := range rec.Controls {
				f.Close()
			}
			if !slices.Equal(names, tt.keep) {
				t.Errorf("kept %q, want %q", names, tt.keep)
			}
			got := [5]int{rec.Expired, rec.Lost, rec.Dropped, len(rec.Controls), len(rec.Stale)}
			if want := [5]int{tt.expired, tt.lost, tt.dropped, tt.controls, tt.stale}; got != want {
				t.Errorf("expired, lost, dropped, controls, stale = %v, want %v (stale: %q)", got, want, rec.Stale)
			}
		})
	}
}

// TestHandoffRoundTrip passes a control socket and entries through a
// Handoff as an upgrade does, reads them back with FromHandoff (same
// process: the numbers stay valid) and sorts them.
func TestHandoffRoundTrip(t *testing.T) {
	testutil.CheckLeaks(t)
	t.Setenv(HandoffEnv, "")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: filepath.Join(testutil.ShortDir(t), "c"), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := NewHandoff()
	if err := h.AddControl(ln); err != nil {
		t.Fatal(err)
	}
	// The entries' socket is lent to the hand-off, as the registry lends
	// its own: after FromHandoff, the recovered entries own it.
	fd, info := tcpListener(t)
	want := []proto.Entry{
		{Name: "a", Network: info.Network, Address: info.Address, Listening: true, UID: 1, StoredAt: time.Unix(100, 0)},
		{Name: "b", Network: info.Network, Address: info.Address, Listening: true, PID: 9, StoredAt: time.Unix(200, 0), ExpiresAt: time.Now().Add(time.Hour).Round(0)},
	}
	for i, e := range want {
		if err := h.AddEntry(Meta{Entry: e}, fd, MetaName(uint64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if h.Len() != 2 { // control and one socket; the metadata is inline
		t.Errorf("%d descriptors collected, want 2", h.Len())
	}
	sf := SocketFile{Path: "/run/a dir/h.sock", Dev: 2049, Ino: 1 << 40}
	h.SetSocketFile(sf)
	assign, err := h.Env()
	if err != nil {
		t.Fatal(err)
	}
	k, v, _ := strings.Cut(assign, "=")
	t.Setenv(k, v)
	passed, file, err := FromHandoff()
	if err != nil {
		t.Fatal(err)
	}
	if file == nil || *file != sf {
		t.Errorf("socket file %+v, want %+v", file, sf)
	}
	// FromHandoff closed the list and handed the rest over: h owns
	// nothing now.
	h.passed, h.lent = nil, nil
	rec := Sort(zaptest.NewLogger(t), passed, time.Now())
	if len(rec.Controls) != 1 || len(rec.Entries) != 2 {
		t.Fatalf("recovered %d controls, %d entries; want 1, 2", len(rec.Controls), len(rec.Entries))
	}
	rec.Controls[0].Close()
	for i, e := range rec.Entries {
		e.FD.Close()
		if !e.Entry.StoredAt.Equal(want[i].StoredAt) || !e.Entry.ExpiresAt.Equal(want[i].ExpiresAt) ||
			e.Entry.Name != want[i].Name || e.Entry.UID != want[i].UID || e.Entry.PID != want[i].PID {
			t.Errorf("entry %d = %+v, want %+v", i, e.Entry, want[i])
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Meta
	}{
		{"minimal", Meta{Entry: proto.Entry{Name: "a", StoredAt: time.Unix(0, 1)}}},
		{"full", Meta{Inode: 1 << 40, Entry: proto.Entry{
			Name: strings.Repeat("n", proto.MaxNameLen), Network: "tcp6", Address: "[::1]:8080", Listening: true,
			UID: 1 << 31, GID: 7, PID: -1, StoredAt: time.Unix(1700000000, 123456789), ExpiresAt: time.Unix(1800000000, 5),
		}}},
		{"a name systemd's FDNAME could not carry", Meta{Entry: proto.Entry{Name: "a:b\nc\x00d", StoredAt: time.Unix(5, 0)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendMeta(nil, &tt.m)
			got, err := DecodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.m) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tt.m)
			}
			if len(b) > MaxMetaSize {
				t.Errorf("%d bytes, over MaxMetaSize", len(b))
			}
			for i := range len(b) {
				if _, err := DecodeMeta(b[:i]); err == nil {
					t.Fatalf("truncated to %d bytes: decoded", i)
				}
			}
			if _, err := DecodeMeta(append(b, 0)); err == nil {
				t.Error("a trailing byte decoded")
			}
		})
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(AppendMeta(nil, &Meta{Inode: 9, Entry: proto.Entry{Name: "web", Network: "tcp", Address: "127.0.0.1:80", StoredAt: time.Unix(1, 2)}}))
	f.Add([]byte("FHMD\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		if again := AppendMeta(nil, &m); string(again) != string(b) {
			// Times decode into the local zone; only the instant matters.
			m2, err := DecodeMeta(again)
			if err != nil || !reflect.DeepEqual(m2, m) {
				t.Fatalf("round trip differs: %x vs %x", again, b)
			}
		}
	})
}

// TestRecoveryAdopts restarts a mirrored registry on the same store, as
// fdholderd does after a crash: the recovered entries are adopted without a
// single store message, a stale one is removed, and the new registry's
// later changes keep the store exact.
func TestRecoveryAdopts(t *testing.T) {
	testutil.CheckLeaks(t)
	reg, st, n := mirrored(t)
	for _, name := range []string{"a", "b", "c"} {
		fd, info := tcpListener(t)
		ttl := time.Duration(0)
		if name == "c" {
			ttl = time.Hour // long enough that the registry never expires it itself
		}
		if _, err := reg.Store(name, fd, holder.StoreOptions{Info: info, Owner: holder.Owner{PID: 7}, TTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	st.sync(n)
	before := want(t, reg)
	delete(before, "c") // it will have expired by the recovery
	passed := st.passed()
	reg.Close() // the crash: the store keeps everything

	stores := func() int {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.msgs
	}
	// The restart comes after c's time is up: Sort takes the clock.
	rec := Sort(zaptest.NewLogger(t), passed, time.Now().Add(2*time.Hour))
	if rec.Expired != 1 || len(rec.Entries) != 2 {
		t.Fatalf("recovered %d entries, %d expired; want 2, 1", len(rec.Entries), rec.Expired)
	}
	mirror := NewMirror(n, zaptest.NewLogger(t), rec.NextSeq)
	reg2 := holder.NewRegistry(holder.RegistryOptions{Logger: zaptest.NewLogger(t), Observer: mirror})
	t.Cleanup(reg2.Close)
	msgs := stores()
	mirror.Expect(rec.Entries)
	for _, e := range rec.Entries {
		if _, err := reg2.Load(e.Entry, e.FD, holder.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mirror.EndRecovery()
	st.sync(n)
	if sent := stores() - msgs - 1; sent != 0 { // -1: the sync marker
		t.Errorf("recovery sent %d store messages, want none", sent)
	}
	mirror.Remove(rec.Stale) // c's metadata and socket
	st.sync(n)
	_, got := recovered(t, st)
	if w := want(t, reg2); !reflect.DeepEqual(got, w) || !reflect.DeepEqual(w, before) {
		t.Errorf("after recovery:\n store %+v\n registry %+v\n before %+v", got, w, before)
	}

	// Later changes of the new registry reach the store as usual.
	if err := reg2.Delete("a", nil); err != nil {
		t.Fatal(err)
	}
	st.sync(n)
	_, got = recovered(t, st)
	if w := want(t, reg2); !reflect.DeepEqual(got, w) {
		t.Errorf("after a delete:\n store %+v\n registry %+v", got, w)
	}
	if names := st.names(); len(names) != 2 {
		t.Errorf("the store holds %q, want b's socket and metadata", names)
	}
}

// TestMirrorFailureRefusesTheStore: when the file descriptor store cannot
// take a copy (here its socket is gone: sendmsg fails), the store is
// refused and nothing is held; a replace leaves the old entry as it was
// (issue 8: a store is acknowledged only once it is durable).
func TestMirrorFailureRefusesTheStore(t *testing.T) {
	testutil.CheckLeaks(t)
	reg, st, _ := mirrored(t)
	fd, info := tcpListener(t)
	if _, err := reg.Store("web", fd, holder.StoreOptions{Info: info}); err != nil {
		t.Fatal(err)
	}
	before := want(t, reg)
	st.shutdown()
	if err := os.Remove(st.path); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		replace bool
	}{
		{"store", false},
		{"replace", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "new"
			if tt.replace {
				name = "web"
			}
			fd, info := tcpListener(t)
			_, err := reg.Store(name, fd, holder.StoreOptions{Info: info, Replace: tt.replace})
			if err == nil || !strings.Contains(err.Error(), "file descriptor store: store socket") {
				t.Errorf("store %q with the store gone: %v, want an error naming the store", name, err)
			}
			if got := want(t, reg); !reflect.DeepEqual(got, before) {
				t.Errorf("held %+v after a refused store, want %+v", got, before)
			}
		})
	}
}

// handoffList writes list to a new memfd, as Handoff.Env does, and points
// HandoffEnv at it; FromHandoff owns the memfd from then on.
func handoffList(t testing.TB, list string) {
	t.Helper()
	n, err := unix.MemfdCreate("fdholder-handoff", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(n, []byte(list)); err != nil {
		unix.Close(n)
		t.Fatal(err)
	}
	t.Setenv(HandoffEnv, fmt.Sprint(n))
}

// TestFromHandoffClosesOnError hands FromHandoff lists it must refuse, each
// naming real sockets passed to this process, and checks that it closes
// them all (CheckLeaks), whatever comes before or after the fault.
func TestFromHandoffClosesOnError(t *testing.T) {
	long := "meta m-1 " + strings.Repeat("00", maxHandoffLine)
	tests := []struct {
		name string
		list func(a, b int) string
		err  string
	}{
		{"wrong header", func(a, b int) string {
			return fmt.Sprintf("fdholder-handoff 9\n%d s-1\n%d s-2\n", a, b)
		}, `header "fdholder-handoff 9"`},
		{"no header", func(a, b int) string {
			return fmt.Sprintf("%d s-1\n%d s-2\n", a, b)
		}, "header"},
		{"a bad line between", func(a, b int) string {
			return fmt.Sprintf("%s\n%d s-1\nnonsense\n%d s-2\n", handoffHeader, a, b)
		}, `bad line "nonsense"`},
		{"an overlong line between", func(a, b int) string {
			return fmt.Sprintf("%s\n%d s-1\n%s\n%d s-2\n", handoffHeader, a, long, b)
		}, "a line longer than"},
		{"an overlong last line without a newline", func(a, b int) string {
			return fmt.Sprintf("%s\n%d s-1\n%d s-2\n%s", handoffHeader, a, b, long)
		}, "a line longer than"},
		{"a descriptor listed twice", func(a, b int) string {
			return fmt.Sprintf("%s\n%d s-1\n%d s-2\n%d s-3\n", handoffHeader, a, b, a)
		}, "bad line"},
		{"standard error listed", func(a, b int) string {
			return fmt.Sprintf("%s\n%d s-1\n2 s-9\n%d s-2\n", handoffHeader, a, b)
		}, `bad line "2 s-9"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			a, _ := tcpListener(t)
			b, _ := tcpListener(t)
			// The list owns a and b now: FromHandoff must close them.
			handoffList(t, tt.list(a.Sysfd(), b.Sysfd()))
			passed, file, err := FromHandoff()
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("FromHandoff = %d passed, %v, %v; want an error with %q", len(passed), file, err, tt.err)
			}
			closeAll(passed)
			if _, ok := os.LookupEnv(HandoffEnv); ok {
				t.Errorf("%s still set", HandoffEnv)
			}
		})
	}
}

// TestFromHandoffLongLines checks that the line reader takes a meta line up
// to the limit, and a last line without its newline.
func TestFromHandoffLongLines(t *testing.T) {
	testutil.CheckLeaks(t)
	m := Meta{Entry: proto.Entry{Name: strings.Repeat("n", proto.MaxNameLen), StoredAt: time.Unix(1, 0)}}
	a, _ := tcpListener(t)
	line := "meta m-7 " + fmt.Sprintf("%x", AppendMeta(nil, &m))
	handoffList(t, fmt.Sprintf("%s\n%d s-1\n%s", handoffHeader, a.Sysfd(), line))
	passed, _, err := FromHandoff()
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(passed)
	if len(passed) != 2 || passed[0].Name != "s-1" || passed[1].Name != "m-7" {
		t.Fatalf("passed %+v, want s-1 and m-7", passed)
	}
	if got, err := DecodeMeta(passed[1].Data); err != nil || got.Entry.Name != m.Entry.Name {
		t.Errorf("meta = %+v, %v", got, err)
	}
}
