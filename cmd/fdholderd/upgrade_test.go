package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/testutil"
)

// copyBinary copies the fdholderd under test to dir/fdholderd, so that a
// test can replace it under the running daemon as a package upgrade does.
func copyBinary(t testing.TB, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, "fdholderd")
	replaceBinary(t, dst, func(w io.Writer) {
		src, err := os.Open(binary)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if _, err := io.Copy(w, src); err != nil {
			t.Fatal(err)
		}
	}, 0o755)
	return dst
}

// replaceBinary writes a new file and renames it over path, as a package
// manager does (writing into a running binary fails with ETXTBSY).
func replaceBinary(t testing.TB, path string, write func(io.Writer), mode os.FileMode) {
	t.Helper()
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	write(f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// storeEntries stores a TCP listener "web", a Unix listener "app/unix"
// with a ttl, and n more TCP listeners, and returns the list.
func storeEntries(t testing.TB, c *fdholder.Client, dir string, n int) []fdholder.Entry {
	t.Helper()
	ctx := testCtx(t)
	web, err := c.Listen(ctx, "web", "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web.Close()
	ln, err := c.Listen(ctx, "app/unix", "unix", filepath.Join(dir, "app.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	for i := range n {
		ln := testutil.ListenTCP(t)
		if _, err := c.Store(ctx, "tcp/"+string(rune('a'+i%26))+string(rune('a'+i/26)), ln, fdholder.StoreOptions{TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		ln.Close()
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// getLoad runs workers clients, each getting "web" in a loop until stop,
// and counts the gets that succeeded and those that failed.
type getLoad struct {
	ok, failed atomic.Int64
	progress   chan struct{} // a get succeeded since waitGets last looked
	mu         sync.Mutex
	errs       []error
	stop       chan struct{}
	done       sync.WaitGroup
}

func startGets(t testing.TB, path string, workers int) *getLoad {
	t.Helper()
	l := &getLoad{stop: make(chan struct{}), progress: make(chan struct{}, 1)}
	for range workers {
		c := dial(t, path)
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				f, _, err := c.Get(ctx, "web")
				cancel()
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, err)
					l.mu.Unlock()
					continue
				}
				f.Close()
				l.ok.Add(1)
				select {
				case l.progress <- struct{}{}:
				default: // waitGets has yet to look at the last one
				}
			}
		}()
	}
	t.Cleanup(l.finish)
	return l
}

func (l *getLoad) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// waitGets waits until n more gets than now have succeeded.
func (l *getLoad) waitGets(t testing.TB, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	timeout := time.After(waitTimeout)
	for l.ok.Load() < target {
		select {
		case <-l.progress:
		case <-timeout:
			t.Fatalf("gets stalled at %d (want %d); %d failed", l.ok.Load(), target, l.failed.Load())
		}
	}
}

func isRecovered(source string) func(record) bool {
	return func(r record) bool { return r.str("msg") == "recovered" && r.str("source") == source }
}

// TestUpgradeUnderGets upgrades a real fdholderd twice in a row (SIGUSR2)
// while clients get an entry in a loop: no get fails, the pid stays the
// same, and every entry comes back with the same metadata.
func TestUpgradeUnderGets(t *testing.T) {
	testutil.CheckLeaks(t)
	dir := testutil.ShortDir(t)
	exe := copyBinary(t, dir)
	path := filepath.Join(dir, "h.sock")
	d := startServing(t, daemonOpts{socket: path, bin: exe, args: []string{"--log-level", "info"}})
	c := dial(t, path)
	before := storeEntries(t, c, dir, 30)

	load := startGets(t, path, 4)
	load.waitGets(t, 200)
	for i := 1; i <= 2; i++ {
		// A new binary, as a package upgrade installs it.
		copyBinary(t, dir)
		d.signal(syscall.SIGUSR2)
		d.waitFor("upgrade", func(r record) bool { return isRecovered("upgrade")(r) && d.count(isRecovered("upgrade")) == i })
		load.waitGets(t, 200) // served by the new binary
	}
	load.finish()
	if n := load.failed.Load(); n > 0 {
		t.Errorf("%d of %d gets failed across two upgrades; first errors: %v", n, n+load.ok.Load(), load.errs[:min(len(load.errs), 5)])
	}
	t.Logf("%d gets, none failed, across two upgrades", load.ok.Load())

	lines, _ := d.log.snapshot()
	for _, r := range records(lines) {
		if r.str("msg") == "serving" && (int(r.num("pid")) != d.pid() || r.str("path") != path || r["activated"] != false) {
			t.Errorf("serving line %v, want pid %d (the same process), path %s, not activated", r, d.pid(), path)
		}
	}
	if r := d.waitFor("recovered", isRecovered("upgrade")); int(r.num("entries")) != len(before) {
		t.Errorf("recovered %v entries, want %d", r["entries"], len(before))
	}
	after, err := c.List(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Errorf("after two upgrades:\n got %+v\nwant %+v", after, before)
	}
	storeGet(t, c, "after-upgrade")
	c.Close()
	d.stop()
	// The upgraded binary removes the socket file the first one created.
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after stop: %s: %v, want it removed", path, err)
	}
}

// TestFailedUpgradeKeepsServing replaces the binary with one that cannot
// run, then asks for an upgrade: fdholderd logs why, keeps serving with
// every entry, and upgrades once the binary is fixed.
func TestFailedUpgradeKeepsServing(t *testing.T) {
	const refused = "upgrade refused; still serving with every entry"
	tests := []struct {
		name  string
		write func(w io.Writer)
		mode  os.FileMode
		want  error  // in the error logged
		msg   string // the line logged
	}{
		{name: "not executable", write: copyOf(t), mode: 0o644, msg: refused},
		{name: "not an ELF file", write: text("this is not a program\n"), mode: 0o755, want: syscall.ENOEXEC, msg: refused},
		{name: "check fails", write: text("#!/bin/sh\necho broken >&2\nexit 3\n"), mode: 0o755, msg: refused},
		{name: "missing", msg: refused},
		// The check passes, then the binary turns into one execve(2)
		// refuses: the server was stopped, and serves again.
		{name: "execve fails after the check", mode: 0o755, want: syscall.ENOEXEC,
			msg:   "upgrade failed; serving again with every entry",
			write: text("#!/bin/sh\nprintf 'garbage\\n' > \"$0.new\" && chmod 755 \"$0.new\" && mv \"$0.new\" \"$0\"\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			dir := testutil.ShortDir(t)
			exe := copyBinary(t, dir)
			path := filepath.Join(dir, "h.sock")
			d := startServing(t, daemonOpts{socket: path, bin: exe})
			c := dial(t, path)
			before := storeEntries(t, c, dir, 3)
			fds := testutil.CountFDs(t, d.pid())

			if tt.write == nil {
				if err := os.Remove(exe); err != nil {
					t.Fatal(err)
				}
			} else {
				replaceBinary(t, exe, tt.write, tt.mode)
			}
			d.signal(syscall.SIGUSR2)
			r := d.waitFor("refusal", func(r record) bool { return r.str("msg") == tt.msg })
			t.Logf("logged: %s", r.str("error"))
			if r.str("error") == "" {
				t.Errorf("the refusal does not say why: %v", r)
			}
			if tt.want != nil && !containsErr(r.str("error"), tt.want) {
				t.Errorf("error %q, want it to mention %v", r.str("error"), tt.want)
			}
			after, err := c.List(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(after, before) {
				t.Errorf("after the failed upgrade:\n got %+v\nwant %+v", after, before)
			}
			storeGet(t, c, "still-serving")
			// No descriptor was left behind: one more entry is held, and
			// the client is connected once, as before.
			if now := testutil.CountFDs(t, d.pid()); now != fds+1 {
				t.Errorf("fdholderd has %d descriptors open, want %d (%d before, and the new entry)", now, fds+1, fds)
			}

			// Fixed, the binary upgrades.
			copyBinary(t, dir)
			d.signal(syscall.SIGUSR2)
			d.waitFor("upgrade", isRecovered("upgrade"))
			storeGet(t, c, "upgraded")
			c.Close()
			d.stop()
		})
	}
}

func copyOf(t testing.TB) func(io.Writer) {
	return func(w io.Writer) {
		src, err := os.Open(binary)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		io.Copy(w, src)
	}
}

func text(s string) func(io.Writer) {
	return func(w io.Writer) { io.WriteString(w, s) }
}

func containsErr(msg string, err error) bool { return strings.Contains(msg, err.Error()) }

// TestWatchdogAndStoreNotifications runs fdholderd under a stand-in
// notification socket with a watchdog interval: it pings WATCHDOG=1, and
// mirrors a store and a delete into the file descriptor store (socket and
// metadata stored, then removed).
func TestWatchdogAndStoreNotifications(t *testing.T) {
	testutil.CheckLeaks(t)
	dir := testutil.ShortDir(t)
	notify := listenNotify(t, filepath.Join(dir, "notify"))
	path := filepath.Join(dir, "h.sock")
	d := startServing(t, daemonOpts{socket: path, env: []string{"NOTIFY_SOCKET=" + notify.path, "WATCHDOG_USEC=200000"}})
	notify.waitFor(t, "WATCHDOG=1")

	c := dial(t, path)
	ln := testutil.ListenTCP(t)
	if _, err := c.Store(testCtx(t), "web", ln, fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(testCtx(t), "web"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 4 {
		m := notify.next(t)
		if strings.HasPrefix(m, "FDSTORE") {
			got = append(got, m)
		}
	}
	wants := []string{"FDSTORE=1\nFDNAME=fhs", "FDSTORE=1\nFDNAME=fhm", "FDSTOREREMOVE=1\nFDNAME=fhm", "FDSTOREREMOVE=1\nFDNAME=fhs"}
	for i, want := range wants {
		if !strings.HasPrefix(got[i], want) {
			t.Errorf("store notification %d = %q, want it to start %q", i, got[i], want)
		}
	}
	c.Close()
	d.stop()
}
