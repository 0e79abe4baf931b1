package ctlsock

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// listen calls Listen and closes the listener at the end of the test.
func listen(t testing.TB, path string) *Socket {
	t.Helper()
	s, err := Listen(ctx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Listener.Close() })
	return s
}

// accepts checks that a SOCK_SEQPACKET client dialling path reaches ln.
func accepts(t testing.TB, ln *net.UnixListener, path string) {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	defer c.Close()
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	s, err := ln.AcceptUnix()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	s.Close()
}

func TestListen(t *testing.T) {
	testutil.CheckLeaks(t)
	path := filepath.Join(testutil.ShortDir(t), "a", "b", "h.sock")
	s := listen(t, path)
	if s.Path != path || s.Replaced {
		t.Errorf("Socket = %+v", s)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want a socket in mode 0600", fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || !di.IsDir() {
		t.Errorf("directory: %v, %v", di, err)
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "h.sock" {
		t.Errorf("directory holds %v, want h.sock alone", ents)
	}
	accepts(t, s.Listener, path)

	pid, err := Probe(ctx(t), path)
	if err != nil || int(pid) != os.Getpid() {
		t.Errorf("Probe = %d, %v; want this process, %d", pid, err, os.Getpid())
	}

	s.Listener.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("closing the listener removed the file: %v", err)
	}
	removed, err := s.RemoveFile()
	if err != nil || !removed {
		t.Errorf("RemoveFile = %v, %v; want true", removed, err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after RemoveFile: %v", err)
	}
	if removed, err := s.RemoveFile(); removed || err != nil {
		t.Errorf("second RemoveFile = %v, %v; want false, nil", removed, err)
	}
}

func TestListenLiveHolder(t *testing.T) {
	testutil.CheckLeaks(t)
	path := filepath.Join(testutil.ShortDir(t), "h.sock")
	first := listen(t, path)
	_, err := Listen(ctx(t), path)
	var held *HeldError
	if !errors.As(err, &held) || held.Path != path || int(held.PID) != os.Getpid() {
		t.Fatalf("second Listen: %v, want a HeldError naming %s and pid %d", err, path, os.Getpid())
	}
	if want := "a holder is already serving on " + path; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
	accepts(t, first.Listener, path) // still the first one's
}

func TestListenStale(t *testing.T) {
	testutil.CheckLeaks(t)
	path := filepath.Join(testutil.ShortDir(t), "h.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	s := listen(t, path)
	if !s.Replaced {
		t.Errorf("Replaced = false, want true")
	}
	accepts(t, s.Listener, path)
}

func TestListenRefuses(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
		want string // in the error
	}{
		{"regular file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a socket (a regular file)"},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "not a socket (a directory)"},
		{"symbolic link to a stale socket", func(t *testing.T, path string) {
			target := path + ".target"
			ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: target, Net: "unixpacket"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, "not a socket (a symbolic link)"},
		{"named pipe", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a socket (a pipe)"},
		{"live stream socket", func(t *testing.T, path string) {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			t.Cleanup(func() { ln.Close() })
		}, "a socket of another type is in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			path := filepath.Join(testutil.ShortDir(t), "h.sock")
			tt.make(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Listen(ctx(t), path)
			if err == nil {
				s.Listener.Close()
				t.Fatalf("Listen succeeded over a %s", tt.name)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want the path and %q", err, tt.want)
			}
			after, err := os.Lstat(path)
			if err != nil || !os.SameFile(before, after) || after.Mode() != before.Mode() {
				t.Errorf("the path changed: %v, %v", after, err)
			}
			ents, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".fdh") {
					t.Errorf("temporary left behind: %s", e.Name())
				}
			}
		})
	}
}

func TestListenPathTooLong(t *testing.T) {
	path := "/tmp/" + strings.Repeat("d", MaxPathLen) + "/h.sock"
	if _, err := Listen(ctx(t), path); err == nil || !strings.Contains(err.Error(), "at most 107") {
		t.Errorf("Listen of a %d-byte path: %v, want a length error", len(path), err)
	}
}

// TestRemoveFileKeepsSuccessor: a holder that stops after a successor has
// replaced its socket must leave the successor's file alone.
func TestRemoveFileKeepsSuccessor(t *testing.T) {
	testutil.CheckLeaks(t)
	path := filepath.Join(testutil.ShortDir(t), "h.sock")
	old := listen(t, path)
	old.Listener.Close() // the old holder stops accepting: its file is stale

	successor := listen(t, path)
	if !successor.Replaced {
		t.Errorf("the successor did not replace the stale file")
	}
	if removed, err := old.RemoveFile(); removed || err != nil {
		t.Errorf("old RemoveFile = %v, %v; want false, nil", removed, err)
	}
	accepts(t, successor.Listener, path)
	if removed, err := successor.RemoveFile(); !removed || err != nil {
		t.Errorf("successor RemoveFile = %v, %v; want true", removed, err)
	}
}

// TestConcurrentListen: of holders starting at once on one path, exactly
// one serves, and every other one is told who.
func TestConcurrentListen(t *testing.T) {
	testutil.CheckLeaks(t)
	path := filepath.Join(testutil.ShortDir(t), "h.sock")
	const n = 8
	type result struct {
		s   *Socket
		err error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			s, err := Listen(ctx(t), path)
			results <- result{s, err}
		}()
	}
	var winners []*Socket
	for range n {
		r := <-results
		var held *HeldError
		switch {
		case r.err == nil:
			winners = append(winners, r.s)
			t.Cleanup(func() { r.s.Listener.Close() })
		case errors.As(r.err, &held):
		default:
			t.Errorf("Listen: %v", r.err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d holders listen on the path, want 1", len(winners))
	}
	accepts(t, winners[0].Listener, path)
}

func TestIsControlListener(t *testing.T) {
	dir := testutil.ShortDir(t)
	tests := []struct {
		name string
		make func(t *testing.T) syscall.Conn
		want bool
	}{
		{"unixpacket listener", func(t *testing.T) syscall.Conn {
			ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: filepath.Join(dir, "p"), Net: "unixpacket"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return ln
		}, true},
		{"unixpacket connection", func(t *testing.T) syscall.Conn {
			fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
			t.Cleanup(func() { a.Close(); b.Close() })
			return a
		}, false},
		{"unix stream listener", func(t *testing.T) syscall.Conn {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return ln
		}, false},
		{"unixgram", func(t *testing.T) syscall.Conn {
			c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "g"), Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}, false},
		{"tcp listener", func(t *testing.T) syscall.Conn {
			ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return ln
		}, false},
		{"udp", func(t *testing.T) syscall.Conn {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}, false},
		{"regular file", func(t *testing.T) syscall.Conn {
			f, err := os.Create(filepath.Join(dir, "f"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}, false},
		{"pipe", func(t *testing.T) syscall.Conn {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return r
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			got, err := IsControlListener(tt.make(t))
			if err != nil || got != tt.want {
				t.Errorf("IsControlListener = %v, %v; want %v, nil", got, err, tt.want)
			}
		})
	}
}

func TestFileListener(t *testing.T) {
	testutil.CheckLeaks(t)
	path := filepath.Join(testutil.ShortDir(t), "h.sock")
	orig, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	f, err := orig.File()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := FileListener(f)
	f.Close() // FileListener made its own copy
	if err != nil {
		t.Fatal(err)
	}
	accepts(t, ln, path)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("closing the listener removed the socket file: %v", err)
	}
}

func TestListenWithModeAndGroup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chown to another group needs root")
	}
	tests := []struct {
		name     string
		opts     Options
		wantMode fs.FileMode
		wantGID  int
		wantErr  string
	}{
		{name: "defaults", opts: Options{GID: -1}, wantMode: 0o600, wantGID: os.Getgid()},
		{name: "group may connect", opts: Options{Mode: 0o660, GID: 4242}, wantMode: 0o660, wantGID: 4242},
		{name: "everyone may connect", opts: Options{Mode: 0o666, GID: -1}, wantMode: 0o666, wantGID: os.Getgid()},
		{name: "set-id bits refused", opts: Options{Mode: 0o4660, GID: -1}, wantErr: "bits other than permissions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			path := filepath.Join(testutil.ShortDir(t), "h.sock")
			s, err := ListenWith(ctx(t), path, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ListenWith = %v, want an error containing %q", err, tt.wantErr)
				}
				if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("a refused ListenWith left %s: %v", path, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Listener.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != tt.wantMode || int(st.Gid) != tt.wantGID {
				t.Errorf("socket mode %v group %d, want mode %v group %d", fi.Mode(), st.Gid, tt.wantMode, tt.wantGID)
			}
			accepts(t, s.Listener, path)
			if _, err := s.RemoveFile(); err != nil {
				t.Error(err)
			}
		})
	}
}
