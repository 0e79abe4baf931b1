package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// The binaries TestMain builds: fdclient itself, and the LISTEN_FDS
// consumer of testdata/listenfds.
var fdclientBin, listenfdsBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fdclient-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if fdclientBin, err = testutil.BuildBinary(dir, "fdclient"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	root, err := testutil.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	listenfdsBin = filepath.Join(dir, "listenfds")
	build := exec.Command("go", "build", "-o", listenfdsBin, "./cmd/fdclient/testdata/listenfds")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build listenfds: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is how a run of fdclient ended.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// fdclientCmd returns the command that runs the fdclient binary against the
// holder at socket, bounded in time.
func fdclientCmd(t testing.TB, socket string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, fdclientBin, append([]string{"--socket", socket}, args...)...)
	// The race detector's one-second sleep at exit would only slow the
	// tests down; its reports still fail the run (exit code 66).
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	return cmd
}

// wait runs cmd to its end and returns how it ended.
func wait(t testing.TB, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// fdclient runs the fdclient binary with args against the holder at socket.
func fdclient(t testing.TB, socket string, args ...string) result {
	t.Helper()
	return wait(t, fdclientCmd(t, socket, args...))
}

// mustRun runs fdclient and fails the test unless it exits 0.
func mustRun(t testing.TB, socket string, args ...string) result {
	t.Helper()
	r := fdclient(t, socket, args...)
	if r.code != 0 {
		t.Fatalf("fdclient %v: %v", args, r)
	}
	return r
}

// dialHolder returns a Go client of the holder at path, closed at the end
// of the test.
func dialHolder(t testing.TB, path string) *fdholder.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := fdholder.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkGolden compares got with testdata/name, or rewrites the file with
// -update.
func checkGolden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/fdclient -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test ./cmd/fdclient -update after checking the change)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}
