package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// TestSocketActivation runs fdholderd under the real systemd-socket-activate,
// which binds the sockets, then, without --accept, waits for the first
// connection attempt before it execs fdholderd with LISTEN_FDS and
// LISTEN_PID (its own pid, kept across exec). It passes on only HOME, PATH
// and TERM of its environment, and no LISTEN_FDNAMES.
func TestSocketActivation(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	testutil.NeedPeer(t, err == nil, "systemd-socket-activate (Debian package systemd): %v", err)
	tests := []struct {
		name    string
		sockets int
		flag    bool // also pass --socket, which activation overrides
	}{
		{name: "one socket", sockets: 1},
		{name: "two sockets", sockets: 2},
		{name: "activation over --socket", sockets: 1, flag: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			dir := testutil.ShortDir(t)
			wrapper := []string{sa, "--seqpacket"}
			var paths []string
			for i := range tt.sockets {
				p := filepath.Join(dir, fmt.Sprintf("s%d.sock", i))
				paths = append(paths, p)
				wrapper = append(wrapper, "-l", p)
			}
			o := daemonOpts{wrapper: wrapper}
			ignored := filepath.Join(dir, "flag", "h.sock")
			if tt.flag {
				o.socket = ignored
			}
			d := start(t, o)
			d.waitLine("Listening on " + paths[len(paths)-1])

			// This connection makes systemd-socket-activate exec fdholderd,
			// which accepts it once it serves the socket.
			c := dial(t, paths[0])
			for _, p := range paths {
				r := d.waitFor("serving "+p, func(r record) bool { return r.str("msg") == "serving" && r.str("path") == p })
				if r["activated"] != true || int(r.num("pid")) != d.pid() {
					t.Errorf("start-up line = %v, want activated, pid %d", r, d.pid())
				}
			}
			storeGet(t, c, "web")
			for _, p := range paths[1:] {
				c2 := dial(t, p)
				entries, err := c2.List(testCtx(t))
				if err != nil || len(entries) != 1 || entries[0].Name != "web" {
					t.Errorf("list through %s: %v, %v; want the entry stored through %s", p, entries, err, paths[0])
				}
				c2.Close()
			}
			c.Close()
			if tt.flag {
				d.waitFor("the ignored --socket", func(r record) bool { return r.str("ignored_path") == ignored })
				if _, err := os.Lstat(filepath.Dir(ignored)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("lstat %s: %v, want it never created", filepath.Dir(ignored), err)
				}
			}

			d.stop()
			for _, p := range paths {
				if m := fileMode(t, p); m.Type() != fs.ModeSocket {
					t.Errorf("%s after exit: mode %v, want the activated socket's file left in place", p, m)
				}
			}
		})
	}
}

// TestActivationClosesOtherDescriptors passes, the systemd way, a control
// socket together with descriptors that are not one (a TCP listener and a
// Unix stream listener): fdholderd serves the first and closes the others.
func TestActivationClosesOtherDescriptors(t *testing.T) {
	testutil.CheckLeaks(t)
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "ctl.sock")
	uln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer uln.Close()
	tln := testutil.ListenTCP(t)
	sln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "stream.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer sln.Close()

	var files []*os.File
	for _, l := range []interface{ File() (*os.File, error) }{uln, tln, sln} {
		f, err := l.File() // a duplicate, for the child's descriptors 3, 4, 5
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// LISTEN_PID must be the pid of fdholderd itself: the shell's, which
	// exec keeps.
	d := start(t, daemonOpts{
		wrapper:    []string{"/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`},
		env:        []string{"LISTEN_FDS=3", "LISTEN_FDNAMES=control:web:stream"},
		extraFiles: files,
	})
	for _, f := range files {
		f.Close()
	}
	r := d.waitFor("serving", func(r record) bool { return r.str("msg") == "serving" })
	if r.str("path") != path || r["activated"] != true || int(r.num("pid")) != d.pid() {
		t.Errorf("start-up line = %v, want %s activated, pid %d", r, path, d.pid())
	}
	for _, name := range []string{"web", "stream"} {
		d.waitFor("closing "+name, func(r record) bool {
			return r.str("fd_name") == name && r.str("msg") == "closing a passed descriptor that is not a control socket"
		})
	}
	if !holdsSocket(t, d.pid(), socketInode(t, uln)) {
		t.Errorf("fdholderd holds no descriptor of the control socket it serves")
	}
	if holdsSocket(t, d.pid(), socketInode(t, tln)) {
		t.Errorf("fdholderd still holds the TCP listener passed to it")
	}
	if holdsSocket(t, d.pid(), socketInode(t, sln)) {
		t.Errorf("fdholderd still holds the Unix stream listener passed to it")
	}

	c := dial(t, path)
	storeGet(t, c, "web")
	c.Close()
	d.stop()
	if m := fileMode(t, path); m.Type() != fs.ModeSocket {
		t.Errorf("after exit: mode %v, want the activated socket's file left in place", m)
	}
}
