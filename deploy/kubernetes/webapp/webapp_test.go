package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// childEnv makes the test binary run the program instead of the tests: the
// tests start it as a real process with a listener at descriptor 3, the
// way fdclient exec does (sd_listen_fds(3) wants LISTEN_PID to be the
// process's own pid, which only the child knows).
const childEnv = "WEBAPP_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		if os.Getenv("LISTEN_FDS") != "" {
			os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		}
		main()
	}
	os.Exit(m.Run())
}

// child is the program running in a process of its own.
type child struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
	err    error
}

// lockedBuffer is the child's stderr, written by exec's copying goroutine
// and read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startChild runs the program with ln (if not nil) as its descriptor 3.
func startChild(t testing.TB, ln *net.TCPListener, args ...string) *child {
	t.Helper()
	c := &child{stderr: &lockedBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], args...)
	c.cmd.Env = append(os.Environ(), childEnv+"=1")
	c.cmd.Stderr = c.stderr
	if ln != nil {
		f, err := ln.File() // a duplicate; the test's listener stays as it is
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		c.cmd.ExtraFiles = []*os.File{f}
		c.cmd.Env = append(c.cmd.Env, "LISTEN_FDS=1", "LISTEN_FDNAMES=web")
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

// waitLog waits for a line containing want on the child's stderr, or its
// exit.
func (c *child) waitLog(t testing.TB, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(c.stderr.String(), want) {
		select {
		case <-c.done:
			if strings.Contains(c.stderr.String(), want) {
				return
			}
			t.Fatalf("webapp exited (%v) before logging %q; stderr:\n%s", c.err, want, c.stderr)
		case <-deadline:
			t.Fatalf("webapp did not log %q; stderr:\n%s", want, c.stderr)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// wait waits for the child's exit and returns its exit code.
func (c *child) wait(t testing.TB) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("webapp did not exit; stderr:\n%s", c.stderr)
	}
	return c.cmd.ProcessState.ExitCode()
}

func TestServes(t *testing.T) {
	testutil.CheckLeaks(t)
	ln := testutil.ListenTCP(t)
	c := startChild(t, ln)
	c.waitLog(t, "webapp: ready: pid ")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	tests := []struct {
		name, path string
		code       int
		body       string
	}{
		{name: "root", path: "/", code: 200, body: fmt.Sprintf("hello from pid %d\n", c.cmd.Process.Pid)},
		{name: "healthz", path: "/healthz", code: 200, body: "ok\n"},
		{name: "unknown", path: "/nope", code: 404, body: "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Get("http://" + ln.Addr().String() + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code || string(b) != tt.body {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, resp.StatusCode, b, tt.code, tt.body)
			}
		})
	}
}

func TestRefusesToStartWithoutListener(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{name: "no LISTEN_FDS", code: 1, want: "no listener passed (LISTEN_FDS): start it through fdclient exec"},
		{name: "bad flag", args: []string{"--nope"}, code: 2, want: "flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startChild(t, nil, tt.args...)
			if code := c.wait(t); code != tt.code || !strings.Contains(c.stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, c.stderr, tt.code, tt.want)
			}
		})
	}
}

// TestDrainOnSIGTERM keeps a keep-alive connection open across SIGTERM: its
// next response must say "Connection: close" (the client then reconnects
// instead of racing a close), the program must exit 0 once it is closed,
// and a connection made meanwhile must wait in the listener's queue (the
// test's own copy of the socket stands in for the holder's) and be served
// by a successor.
func TestDrainOnSIGTERM(t *testing.T) {
	testutil.CheckLeaks(t)
	ln := testutil.ListenTCP(t)
	c := startChild(t, ln)
	c.waitLog(t, "webapp: ready: pid ")

	kept, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	r := bufio.NewReader(kept)
	get := func(wantClose bool) {
		t.Helper()
		if _, err := io.WriteString(kept, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Close != wantClose {
			t.Fatalf("response Close = %v, want %v (header %v)", resp.Close, wantClose, resp.Header)
		}
	}
	get(false)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.waitLog(t, "webapp: draining: 1 connections open")

	// The child has closed its listener; the socket lives on in the
	// test's copy, where the kernel completes this handshake and queues
	// the connection (listen(2)).
	queued, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("connect while draining: %v", err)
	}
	defer queued.Close()
	if _, err := io.WriteString(queued, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}

	get(true) // the kept connection's last response
	if code := c.wait(t); code != 0 {
		t.Fatalf("webapp exited %d after SIGTERM, want 0; stderr:\n%s", code, c.stderr)
	}
	if want := "webapp: drained: 0 connections cut"; !strings.Contains(c.stderr.String(), want) {
		t.Fatalf("stderr %q, want %q", c.stderr, want)
	}

	next := startChild(t, ln)
	next.waitLog(t, "webapp: ready: pid ")
	queued.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(queued), nil)
	if err != nil {
		t.Fatalf("the connection queued while draining: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("hello from pid %d\n", next.cmd.Process.Pid); string(b) != want {
		t.Fatalf("queued connection got %q, want %q from the successor", b, want)
	}
}
