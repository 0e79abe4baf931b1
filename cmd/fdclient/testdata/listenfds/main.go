// Command listenfds is a real consumer of sd_listen_fds(3) descriptors for
// the tests of "fdclient exec": it takes them with go-systemd's activation
// package, as a service would, and reports on stdout, as one JSON line,
// what it was given. Then it accepts one connection on each stream
// listener and writes the listener's name to it, so that a test can prove
// each socket works and arrived under the right name.
//
// It lives under testdata so that "go test ./..." does not build it; the
// tests build it in TestMain.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Report is what the program prints. The tests decode the same shape.
type Report struct {
	PID int `json:"pid"`

	// Env holds the variables that describe sockets (LISTEN_*, NGINX,
	// FDHOLDER_FD_*) as found, before activation.Files
	// unset them; a missing variable is absent.
	Env map[string]string `json:"env"`

	// FDs lists every descriptor open when main started, before anything
	// was opened.
	FDs []FD `json:"fds"`

	// Received lists what activation.Files returned, in order.
	Received []Received `json:"received"`

	Errors []string `json:"errors,omitempty"`
}

// FD is one open descriptor.
type FD struct {
	FD      int    `json:"fd"`
	Target  string `json:"target"`  // readlink of /proc/self/fd/N
	Cloexec bool   `json:"cloexec"` // FD_CLOEXEC set
}

// Received is one descriptor activation.Files handed over.
type Received struct {
	FD   int    `json:"fd"`
	Name string `json:"name"`
}

func main() {
	// First, before this program opens anything: the descriptors it was
	// started with, plus those its own runtime opened during start-up.
	// The two are told apart by FD_CLOEXEC: the Go runtime opens its own
	// close-on-exec, and a descriptor that survived execve(2) cannot be.
	rep := Report{PID: os.Getpid(), Env: map[string]string{}, FDs: openFDs()}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LISTEN_") || k == "NGINX" || strings.HasPrefix(k, "FDHOLDER_FD_") {
			rep.Env[k] = v
		}
	}

	files := activation.Files(true)
	var listeners []net.Listener
	var names []string
	for _, f := range files {
		fd := -1
		if rc, err := f.SyscallConn(); err == nil {
			rc.Control(func(n uintptr) { fd = int(n) }) // not f.Fd(): it would make the socket blocking
		}
		rep.Received = append(rep.Received, Received{FD: fd, Name: f.Name()})
		if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t == unix.SOCK_DGRAM {
			continue // not a stream socket: reported, not served
		}
		ln, err := net.FileListener(f)
		if err != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("listener %s: %v", f.Name(), err))
			continue
		}
		f.Close()
		listeners = append(listeners, ln)
		names = append(names, rep.Received[len(rep.Received)-1].Name)
	}

	b, err := json.Marshal(rep)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(append(b, '\n'))

	// Serve one connection per listener, bounded in time so that a test
	// that fails early does not leave this program behind (the tests also
	// kill it by pid at their end). The bound is not a guess at how fast
	// the test connects: TestExecManySockets runs an fdclient list before
	// each of its 12 connections, and at a load of 40 those took over the
	// 10 s this used to be, so the last listeners were never accepted.
	deadline := time.Now().Add(2 * time.Minute)
	code := 0
	for i, ln := range listeners {
		if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			d.SetDeadline(deadline)
		}
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "listenfds: accept on %s: %v\n", names[i], err)
			code = 1
			continue
		}
		fmt.Fprintf(c, "%s\n", names[i])
		c.Close()
	}
	os.Exit(code)
}

// openFDs lists the open descriptors with raw system calls, so that listing
// them opens nothing but the directory itself, which it leaves out.
func openFDs() []FD {
	dir, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listenfds:", err)
		os.Exit(1)
	}
	defer unix.Close(dir)
	var fds []FD
	buf := make([]byte, 4096)
	for {
		n, err := unix.ReadDirent(dir, buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "listenfds: getdents:", err)
			os.Exit(1)
		}
		if n <= 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			fd, err := strconv.Atoi(name)
			if err != nil || fd == dir {
				continue
			}
			target, _ := os.Readlink("/proc/self/fd/" + name)
			flags, err := unix.FcntlInt(uintptr(fd), syscall.F_GETFD, 0)
			fds = append(fds, FD{FD: fd, Target: target, Cloexec: err == nil && flags&unix.FD_CLOEXEC != 0})
		}
	}
	return fds
}
