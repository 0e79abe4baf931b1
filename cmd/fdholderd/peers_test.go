package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/testutil"
)

// buildPeer builds testdata/peer, the one-operation client the tests run
// as other uids, into dir.
func buildPeer(dir string) (string, error) {
	root, err := testutil.ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "peer")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fdholderd/testdata/peer")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New("go build ./cmd/fdholderd/testdata/peer: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
}

// cred is an identity a client process runs with.
type cred struct {
	name     string
	uid, gid uint32
	groups   []uint32 // supplementary groups
}

// The peers of the security tests. The test process is root, so it can
// start clients with any credentials (SysProcAttr.Credential); uid 33 and
// 65534 are www-data and nobody in Debian's base passwd.
var (
	asRoot   = cred{name: "root"}
	nobody   = cred{name: "nobody", uid: 65534, gid: 65534}
	wwwData  = cred{name: "www-data", uid: 33, gid: 33}
	member   = cred{name: "member", uid: 4000, gid: 4000, groups: []uint32{100, 4001}}
	stranger = cred{name: "stranger", uid: 4002, gid: 4002, groups: []uint32{4003}}
)

// needRoot skips a test that starts processes as other uids unless it runs
// as root (CI does).
func needRoot(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		testutil.NeedPeer(t, false, "root, to run clients as other uids")
	}
}

// outcome is how a client process ended.
type outcome struct {
	code           int
	stdout, stderr string
}

// runAs runs bin with args as c and returns how it ended.
func runAs(t testing.TB, c cred, bin string, args ...string) outcome {
	t.Helper()
	return runAsEnv(t, c, append(cleanEnv(), "HOME=/"), bin, args...)
}

// runAsEnv is runAs with the environment env.
func runAsEnv(t testing.TB, c cred, env []string, bin string, args ...string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	if c.uid != 0 || c.gid != 0 || len(c.groups) > 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid, Groups: c.groups}}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return outcome{0, stdout.String(), stderr.String()}
	case errors.As(err, &ee) && ee.Exited():
		return outcome{ee.ExitCode(), stdout.String(), stderr.String()}
	}
	t.Fatalf("%s %v as %s: %v\n%s", bin, args, c.name, err, stderr.String())
	return outcome{}
}

// peerDo runs the peer client as c: one operation, its exit status.
func peerDo(t testing.TB, c cred, path string, args ...string) outcome {
	t.Helper()
	return runAs(t, c, peerBin, append([]string{path}, args...)...)
}

// sharedSocket returns a socket path in a new directory every uid can
// enter (ShortDir makes it 0700).
func sharedSocket(t testing.TB) string {
	t.Helper()
	dir := testutil.ShortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "h.sock")
}

// writePolicy writes a policy file and returns its path.
func writePolicy(t testing.TB, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(path+".tmp", []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil { // a reload never reads half a file
		t.Fatal(err)
	}
	return path
}

// storeNew stores a fresh TCP listener under name through c and returns its
// address. The holder's copy keeps it open.
func storeNew(t testing.TB, c *fdholder.Client, name string) string {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := c.Store(testCtx(t), name, ln, fdholder.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String()
}

// checkAccepts gets the listener held under name and checks that it
// accepts a connection made to addr: the held socket is alive and still
// the one stored.
func checkAccepts(t testing.TB, c *fdholder.Client, name, addr string) {
	t.Helper()
	f, e, err := c.Get(testCtx(t), name)
	if err != nil {
		t.Fatalf("get %q: %v", name, err)
	}
	defer f.Close()
	if e.Address != addr {
		t.Fatalf("entry %q is at %s, want %s", name, e.Address, addr)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial the held %q: %v", name, err)
	}
	defer conn.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(waitTimeout))
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on the held %q: %v", name, err)
	}
	s.Close()
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
