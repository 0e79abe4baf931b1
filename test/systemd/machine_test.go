package systemd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/testutil"
)

// systemdBin is systemd itself, run as PID 1 of the private namespaces.
const systemdBin = "/lib/systemd/systemd"

// waitTimeout bounds every wait for the machine: its boot, a unit's state.
const waitTimeout = 30 * time.Second

// runTimeout bounds one command run inside the machine (machine.run). It
// only turns a hang into a failure: "dpkg -i" of the package, whose
// maintainer scripts reload systemd and start the socket and whose man-db
// trigger runs, was killed at the 30 s of waitTimeout at a load of 40 on a
// 2-core machine while it was still working.
const runTimeout = 5 * time.Minute

// machine is a systemd booted in private namespaces.
type machine struct {
	t       testing.TB
	dir     string // scratch directory on the host, outside /tmp and /run
	unshare *exec.Cmd
	pid     int // systemd's pid, as the host sees it
	log     *bytes.Buffer
}

// needMachine skips (or, in CI, fails) the test when a private systemd
// cannot be booted here.
func needMachine(t testing.TB) {
	t.Helper()
	testutil.NeedPeer(t, os.Geteuid() == 0, "booting systemd in private namespaces needs root")
	_, err := os.Stat(systemdBin)
	testutil.NeedPeer(t, err == nil, "systemd (Debian package systemd): %v", err)
	for _, tool := range []string{"unshare", "nsenter", "ip"} {
		_, err := exec.LookPath(tool)
		testutil.NeedPeer(t, err == nil, "%s (Debian packages util-linux, iproute2): %v", tool, err)
	}
}

// scratchDir returns a new directory for the files the units need. It
// cannot be under /tmp, /var/tmp or /run, which are private tmpfs inside
// the machine, nor under /home or /root, which ProtectHome=yes hides from
// the holder: the module's directory if it qualifies, else /var/lib.
func scratchDir(t testing.TB) string {
	t.Helper()
	base := "/var/lib"
	if root, err := testutil.ModuleRoot(); err == nil && !hidden(root) {
		base = root
	}
	dir, err := os.MkdirTemp(base, ".fdholder-systemd-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func hidden(path string) bool {
	for _, p := range []string{"/tmp", "/var/tmp", "/run", "/home", "/root"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// buildBinaries builds fdholderd and fdclient into dir as shipped.
func buildBinaries(t testing.TB, dir string) {
	t.Helper()
	testutil.BuildShipped(t, dir, "fdholderd", "fdclient")
}

// bootScript runs inside the new namespaces: private tmpfs over /tmp,
// /var/tmp and /run (systemd cleans them at boot), and over /var/log and
// /var/lib/systemd (journald, utmp and systemd's state would otherwise be
// written to the host's disk), the loopback up, the units in
// /run/systemd/system, then systemd as PID 1.
const bootScript = `#!/bin/sh
set -e
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/log
mount -t tmpfs tmpfs /var/lib/systemd
mkdir -p /run/systemd/system
ip link set lo up
cp "$1"/units/* /run/systemd/system/
exec ` + systemdBin + ` --system --unit=fdholder-test.target
`

const testTarget = `[Unit]
Description=fdholder test target
`

// boot starts systemd in private namespaces with the shipped units, their
// binary paths replaced by dir's, and waits until it runs. It is killed
// (by its pid) at the end of the test.
func boot(t testing.TB, dir string) *machine {
	t.Helper()
	units := filepath.Join(dir, "units")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fdholderd.socket", "fdholderd.service", "example-web.service"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("/usr/sbin/fdholderd"), []byte(dir+"/fdholderd"))
		b = bytes.ReplaceAll(b, []byte("/usr/bin/fdclient"), []byte(dir+"/fdclient"))
		b = bytes.ReplaceAll(b, []byte("/etc/fdholder/"), []byte(dir+"/"))
		b = bytes.ReplaceAll(b, []byte("/srv/example-web"), []byte(dir+"/web"))
		if err := os.WriteFile(filepath.Join(units, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The policy the service unit names, as the package installs it.
	policy, err := os.ReadFile(filepath.Join(root, "deploy", "fdholder", "policy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.toml"), policy, 0o644); err != nil {
		t.Fatal(err)
	}
	return start(t, dir, bootScript)
}

// overlayScript boots systemd on a private copy of the host's root: an
// overlay whose lower layer is / (read only, never written) and whose
// upper layer is a tmpfs, so that what a test installs (dpkg -i) lands in
// memory and vanishes with the machine. The upper layer must not be on
// the lower one's file system (overlayfs refuses overlapping layers),
// hence the tmpfs. It is bound, read-only, at /run/overlay-upper inside,
// so that a test can see every file the machine changed. Then /dev,
// /proc, /sys and tmpfs over /tmp, /var/tmp and /run as in bootScript,
// and pivot_root(2) into the overlay.
const overlayScript = `#!/bin/sh
set -e
dir=$1
mount -t tmpfs tmpfs "$dir/ov"
mkdir -p "$dir/ov/upper" "$dir/ov/work" "$dir/ov/root"
mount -t overlay overlay -o lowerdir=/,upperdir="$dir/ov/upper",workdir="$dir/ov/work" "$dir/ov/root"
r=$dir/ov/root
mount --rbind /dev "$r/dev"
mount --rbind /sys "$r/sys"
mount -t proc proc "$r/proc"
mount -t tmpfs tmpfs "$r/tmp"
mount -t tmpfs tmpfs "$r/var/tmp"
mount -t tmpfs tmpfs "$r/run"
mkdir -p "$r/run/systemd/system" "$r/run/overlay-upper"
mount --bind "$dir/ov/upper" "$r/run/overlay-upper"
mount -o remount,bind,ro "$r/run/overlay-upper"
cp "$dir"/units/* "$r/run/systemd/system/"
ip link set lo up
cd "$r"
pivot_root . mnt
umount -l /mnt
exec ` + systemdBin + ` --system --unit=fdholder-test.target
`

// bootOverlay starts systemd in private namespaces on an overlay of the
// host's root (overlayScript), with no unit of fdholder's: a machine to
// install the package in.
func bootOverlay(t testing.TB, dir string) *machine {
	t.Helper()
	for _, d := range []string{"units", "ov"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return start(t, dir, overlayScript)
}

// start writes the test target and script into dir, runs script in new
// namespaces and waits until the systemd it starts runs.
func start(t testing.TB, dir, bootScript string) *machine {
	t.Helper()
	units := filepath.Join(dir, "units")
	if err := os.WriteFile(filepath.Join(units, "fdholder-test.target"), []byte(testTarget), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "boot.sh")
	if err := os.WriteFile(script, []byte(bootScript), 0o755); err != nil {
		t.Fatal(err)
	}

	m := &machine{t: t, dir: dir, log: &bytes.Buffer{}}
	// --kill-child: if unshare dies, so does systemd; Pdeathsig: if the
	// test dies, so does unshare.
	m.unshare = exec.Command("unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount", "--mount-proc",
		"--uts", "--ipc", "--cgroup", "--net", "--propagation", "private", script, dir)
	m.unshare.Stdout, m.unshare.Stderr = m.log, m.log
	release, err := testutil.StartTied(m.unshare)
	if err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() {
		m.kill()
		release()
	})

	deadline := time.Now().Add(waitTimeout)
	for m.pid == 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", m.unshare.Process.Pid, m.unshare.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.pid, _ = strconv.Atoi(f[0])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd did not start; output:\n%s", m.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m.waitFor("system running", func() bool {
		out, _ := m.run("systemctl", "is-system-running")
		s := strings.TrimSpace(out)
		return s == "running" || s == "degraded"
	})
	return m
}

// kill kills systemd by its pid, which ends the namespaces and everything
// in them, and reaps unshare.
func (m *machine) kill() {
	if m.pid > 0 {
		unix.Kill(m.pid, unix.SIGKILL)
	}
	m.unshare.Process.Kill()
	m.unshare.Wait()
}

// run runs a command inside the machine (nsenter into all its namespaces)
// and returns its combined output.
func (m *machine) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(m.pid), "-a"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// must is run that fails the test on error.
func (m *machine) must(args ...string) string {
	m.t.Helper()
	out, err := m.run(args...)
	if err != nil {
		m.t.Fatal(err)
	}
	return out
}

// show returns a unit's property (systemctl show -p).
func (m *machine) show(unit, prop string) string {
	m.t.Helper()
	return strings.TrimSpace(m.must("systemctl", "show", "--value", "-p", prop, unit))
}

// waitFor polls cond until it holds, or fails the test after waitTimeout.
func (m *machine) waitFor(what string, cond func() bool) {
	m.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			journal, _ := m.run("journalctl", "--no-pager", "-n", "60")
			m.t.Fatalf("timed out waiting for %s; journal:\n%s", what, journal)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hostPath returns the host's path to path inside the machine's mount
// namespace, through /proc/PID/root.
func (m *machine) hostPath(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", m.pid, path)
}

// inNetns runs fn on a thread that has joined the machine's network
// namespace (setns(2)); the thread is discarded afterwards.
func (m *machine) inNetns(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", m.pid))
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- os.NewSyscallError("setns", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// copyGunicornConf writes the shipped deploy/systemd/gunicorn.conf.py into
// dir, the example's WorkingDirectory=, where its --config names it.
func copyGunicornConf(t testing.TB, dir string) {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", "gunicorn.conf.py"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gunicorn.conf.py"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
}
