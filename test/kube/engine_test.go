package kube

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/e2etest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// commandTimeout bounds one podman or buildah command; the image build,
// which compiles three static binaries, is the longest.
const commandTimeout = 4 * time.Minute

// emptyCgroupV1 are the cgroup v1 hierarchies that some machines of this
// kind show under /sys/fs/cgroup as empty read-only directories, in which
// podman fails to create the pod's cgroups; a tmpfs over each (inside the
// private namespace only) lets it proceed.
var emptyCgroupV1 = []string{"net_cls,net_prio", "perf_event", "hugetlb"}

// containersConf is passed with CONTAINERS_CONF (containers.conf(5)): runc
// and cgroupfs, as on this machine kind (no systemd runs here), and
// descriptor limits within the machine's hard RLIMIT_NOFILE of 20,000.
// Healthchecks (the probes) would need systemd timers: podman logs that it
// cannot add them and runs the pod without.
const containersConf = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
image_copy_tmp_dir = "%s"
`

// storageConf is passed with CONTAINERS_STORAGE_CONF
// (containers-storage.conf(5)); the vfs driver needs no mounts but the
// containers' own, and the images are a few MB.
const storageConf = `[storage]
driver = "vfs"
graphroot = "%s"
runroot = "/run/containers/storage"
`

// nsScript runs in the new mount namespace (unshare --mount --propagation
// private): a tmpfs over /run (podman's and runc's state: /run/libpod,
// /run/containers, /run/runc, /run/netns), over the image storage ($1) and
// over the empty cgroup hierarchies; then it reports and waits, holding the
// namespace, until the test kills it. Temporary files (buildah's, the
// image copies') go to the test's directory through TMPDIR and
// image_copy_tmp_dir instead of /var/tmp, where the checkout might be.
const nsScript = `set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs "$1"
shift
for d in "$@"; do
	if [ -d "/sys/fs/cgroup/$d" ]; then
		mount -t tmpfs tmpfs "/sys/fs/cgroup/$d"
		echo "cgroup $d"
	fi
done
echo ready
exec sleep infinity
`

// engine runs podman and buildah inside a private mount namespace held by
// one process.
type engine struct {
	t       testing.TB
	env     []string // the environment of every command
	nsPid   int      // the process holding the namespace
	mntNS   string   // its /proc/PID/ns/mnt link
	cgroups []string // the hierarchies covered with a tmpfs

	// newCgroupParents are the cgroupfs directories for podman's cgroups
	// (cgroup_manager = "cgroupfs" puts every pod under libpod_parent in
	// each hierarchy) that did not exist before the test: the host's
	// cgroup file system is not private to the namespace, and podman
	// leaves them behind, empty.
	newCgroupParents []string
}

// needEngine skips (or, in CI, fails) the test when podman cannot run here.
func needEngine(t testing.TB) {
	t.Helper()
	testutil.NeedPeer(t, os.Geteuid() == 0, "podman kube play of the manifests needs root")
	for _, tool := range []struct{ bin, pkg string }{
		{"podman", "podman"}, {"buildah", "buildah"}, {"catatonit", "catatonit"}, {"runc", "runc"},
		{"wrk", "wrk"}, {"unshare", "util-linux"}, {"nsenter", "util-linux"}, {"ss", "iproute2"},
	} {
		_, err := exec.LookPath(tool.bin)
		testutil.NeedPeer(t, err == nil, "%s (apt-get install %s): %v", tool.bin, tool.pkg, err)
	}
}

// startEngine sets up the namespace and the configuration in dir. At the
// end of the test every process left in the namespace is killed, which
// ends the namespace and its mounts.
func startEngine(t testing.TB, dir string) *engine {
	t.Helper()
	storage := filepath.Join(dir, "storage")
	if err := os.Mkdir(storage, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "containers.conf")
	sconf := filepath.Join(dir, "storage.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(containersConf, tmp)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sconf, []byte(fmt.Sprintf(storageConf, storage)), 0o644); err != nil {
		t.Fatal(err)
	}
	e := &engine{t: t, env: append(os.Environ(), "CONTAINERS_CONF="+conf, "CONTAINERS_STORAGE_CONF="+sconf, "TMPDIR="+tmp)}
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hierarchies {
		parent := filepath.Join(h, "libpod_parent")
		if _, err := os.Stat(parent); os.IsNotExist(err) {
			e.newCgroupParents = append(e.newCgroupParents, parent)
		}
	}

	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", nsScript, "sh", storage}, emptyCgroupV1...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	release, err := testutil.StartTied(cmd) // if the test dies, so does the namespace
	if err != nil {
		t.Fatalf("unshare: %v", err)
	}
	e.nsPid = cmd.Process.Pid
	t.Cleanup(func() {
		e.killNamespace()
		cmd.Wait()
		release()
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "cgroup "); ok {
			e.cgroups = append(e.cgroups, c)
		}
		if line == "ready" {
			break
		}
	}
	if sc.Err() != nil || e.mntNSOf(e.nsPid) == "" {
		t.Fatalf("private mount namespace not set up: %v %s", sc.Err(), stderr.String())
	}
	e.mntNS = e.mntNSOf(e.nsPid)
	if e.mntNS == e.mntNSOf(os.Getpid()) {
		t.Fatalf("unshare did not make a new mount namespace")
	}
	t.Logf("podman runs in mount namespace %s (tmpfs over the empty cgroup v1 dirs: %v)", e.mntNS, e.cgroups)
	return e
}

func (e *engine) mntNSOf(pid int) string {
	s, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	return s
}

// command returns args to be run inside the namespace.
func (e *engine) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(e.nsPid), "-m", "--"}, args...)...)
	cmd.Env = e.env
	return cmd
}

// run runs args inside the namespace and returns their combined output.
func (e *engine) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := e.command(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// must is run, failing the test on an error.
func (e *engine) must(args ...string) string {
	e.t.Helper()
	return e.ok(e.run(args...))
}

// ok returns out, or fails the test with err.
func (e *engine) ok(out string, err error) string {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// podman runs podman inside the namespace and returns its standard output
// only (its log lines go to standard error), trimmed.
func (e *engine) podman(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := e.command(ctx, append([]string{"podman"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// mustPodman is podman, failing the test on an error.
func (e *engine) mustPodman(args ...string) string {
	e.t.Helper()
	return e.ok(e.podman(args...))
}

// inspectInt is one integer field of podman inspect (a Go template).
func (e *engine) inspectInt(name, field string) int {
	e.t.Helper()
	out := e.mustPodman("inspect", "--format", "{{"+field+"}}", name)
	n, err := strconv.Atoi(out)
	if err != nil {
		e.t.Fatalf("podman inspect %s %s: %q: %v", name, field, out, err)
	}
	return n
}

// runningPid waits until podman reports a process for container name
// other than not (0 for any), and returns its pid. podman writes
// .State.Pid after the runtime started the process, so a container whose
// process already logs may still read 0 for a moment: seen under load,
// where the app's ready line came before podman's state.
func (e *engine) runningPid(name string, not int) int {
	e.t.Helper()
	var pid int
	e2etest.WaitFor(e.t, startTimeout, "a running process in container "+name, func() bool {
		pid = e.inspectInt(name, ".State.Pid")
		return pid != 0 && pid != not
	})
	return pid
}

// leftovers lists what podman still has: containers, pods, images,
// volumes. Empty means torn down.
func (e *engine) leftovers() ([]string, error) {
	var left []string
	for _, what := range [][]string{
		{"ps", "--all", "--quiet"}, {"pod", "ps", "--quiet"}, {"images", "--quiet"}, {"volume", "ls", "--quiet"},
	} {
		out, err := e.podman(what...)
		if err != nil {
			return nil, err
		}
		for _, id := range strings.Fields(out) {
			left = append(left, what[0]+" "+id)
		}
	}
	return left, nil
}

// clearCgroupDirs deletes what podman wrote into the tmpfs over the empty
// cgroup hierarchies: podman kube down fails on them otherwise.
func (e *engine) clearCgroupDirs() {
	for _, d := range e.cgroups {
		e.run("find", "/sys/fs/cgroup/"+d, "-mindepth", "1", "-delete")
	}
}

// removeCgroupParents removes the cgroup directories podman created under
// libpod_parent, deepest first, and libpod_parent itself where the test
// created it. rmdir(2) removes only a cgroup without processes, so a
// cgroup still in use elsewhere stays; it returns what is left.
func (e *engine) removeCgroupParents() []string {
	var left []string
	for _, parent := range e.newCgroupParents {
		var dirs []string
		filepath.WalkDir(parent, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil {
				left = append(left, dirs[i])
			}
		}
	}
	return left
}

// killNamespace kills every process in the namespace, by pid: the
// conmons and containers podman left if the test failed before its
// teardown, then the process holding it. Only processes whose mount
// namespace is this one are touched: the test created all of them.
func (e *engine) killNamespace() {
	if e.mntNS != "" {
		for _, pid := range e.pidsInNamespace() {
			if pid != e.nsPid {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
	unix.Kill(e.nsPid, unix.SIGKILL)
}

// pidsInNamespace lists the processes whose mount namespace is e's, and
// their descendants (the containers, each in a mount namespace of its
// own, are children of their conmon).
func (e *engine) pidsInNamespace() []int {
	ents, _ := os.ReadDir("/proc")
	var todo []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err == nil && e.mntNSOf(pid) == e.mntNS {
			todo = append(todo, pid)
		}
	}
	seen := make(map[int]bool)
	var pids []int
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		pids = append(pids, pid)
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
			for _, f := range strings.Fields(string(b)) {
				if kid, err := strconv.Atoi(f); err == nil {
					todo = append(todo, kid)
				}
			}
		}
	}
	return pids
}
