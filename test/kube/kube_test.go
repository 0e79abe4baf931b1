package kube

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/e2etest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// The names podman kube play gives the pod of deploy/kubernetes's
// Deployment "example-web" and its containers.
const (
	manifest  = "deployment-containers.yaml"
	pod       = "example-web-pod-0"
	holderCtr = pod + "-fdholder"
	webCtr    = pod + "-web"
	webAddr   = "127.0.0.1:8080" // the pod's own loopback
	readyLine = "webapp: ready: pid "
)

// restarts is how many times the app container is ended under load, in
// each way; wrkConnections is wrk's -c.
const (
	restarts       = 5
	wrkConnections = 32
)

// startTimeout bounds the wait for a container (re)start: podman restarts a
// container whose process died from conmon's exit command, at once.
const startTimeout = 60 * time.Second

// TestPodSurvivesAppKills plays the containers: variant of the manifests,
// drives the pod with wrk from inside its network namespace, ends the app
// container's process five times with kill -9 and five times with SIGTERM,
// and lets the pod's restart policy (Always) bring it back each time:
// fdclient exec gets the same listener from the holder, in the same
// network namespace, so no connection is refused. Then it tears the pod
// down and checks that podman has nothing left.
func TestPodSurvivesAppKills(t *testing.T) {
	needEngine(t)
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	deploy := filepath.Join(root, "deploy", "kubernetes")
	dir := testutil.ShortDir(t)
	e := startEngine(t, dir)
	t.Cleanup(func() { teardown(t, e, filepath.Join(deploy, manifest)) })

	for _, image := range strings.Fields(e.must(filepath.Join(deploy, "image", "build"))) {
		t.Logf("built %s", image)
	}
	e.mustPodman("kube", "play", "--network", "none", filepath.Join(deploy, manifest))

	if pods := e.mustPodman("pod", "ps", "--format", "{{.Name}}"); pods != pod {
		t.Fatalf("pods %q, want %s alone", pods, pod)
	}
	e2etest.WaitFor(t, startTimeout, "the app's ready line", func() bool {
		return strings.Count(e.logs(webCtr), readyLine) == 1
	})
	infra := e.infraPid(pod)
	netns := netnsOf(t, infra)
	if got := netnsOf(t, e.runningPid(webCtr, 0)); got != netns {
		t.Fatalf("the app runs in network namespace %s, the pod's is %s", got, netns)
	}
	// podman applied the manifests' security context: the holder admits
	// the app because both run as uid 65532.
	for _, c := range []string{holderCtr, webCtr} {
		got := e.mustPodman("inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.EffectiveCaps}}", c)
		if want := "65532:65532 true []"; got != want {
			t.Errorf("container %s: user, read-only root, capabilities %q, want %q", c, got, want)
		}
	}
	entry := e.heldEntry(t)
	t.Logf("pod network namespace %s; held: %s %s, owner uid %v pid %v", netns, entry.Name, entry.Address, entry.OwnerUID, entry.OwnerPID)
	// The app container stored it from a sibling pid namespace: the
	// holder saw pid 0 (SO_PEERCRED, see docs/kubernetes.md).
	if entry.OwnerUID != 65532 || entry.OwnerPID != 0 {
		t.Errorf("owner uid %d pid %d, want 65532 and 0 (a peer in a sibling pid namespace)", entry.OwnerUID, entry.OwnerPID)
	}

	// Each way of ending the app, under its own wrk run. kill -9 (a crash,
	// an OOM kill) cannot lose less than the requests the app had
	// accepted and not answered: one per wrk connection at most, as wrk
	// keeps one request in flight on each. Nothing may be refused or time
	// out: connections made while no app runs wait in the held socket's
	// queue. SIGTERM (what the kubelet sends before an in-place restart)
	// lets webapp drain, and loses nothing at all.
	ways := []struct {
		name    string
		sig     syscall.Signal
		maxLost int64
	}{
		{name: "kill -9", sig: syscall.SIGKILL, maxLost: wrkConnections * restarts},
		{name: "SIGTERM", sig: syscall.SIGTERM, maxLost: 0},
	}
	done := 0 // restarts so far
	for _, way := range ways {
		wrk := startWrk(t, dir, infra)
		e2etest.WaitFor(t, startTimeout, "wrk's connections", func() bool { return established(t, infra) > 0 })
		for range restarts {
			done++
			e.restartApp(t, way.sig, done, netns)
		}
		res := wrk.stop(t)
		t.Logf("wrk across %d restarts of the app container by %s: %v", restarts, way.name, res)
		lost := res.Read + res.Write
		if res.Requests == 0 || res.Connect != 0 || res.Timeout != 0 || res.Non2xx3xx != 0 || lost > way.maxLost {
			t.Errorf("%s: wrk: %v; want requests, nothing refused or timed out, at most %d requests lost", way.name, res, way.maxLost)
		}
	}

	if got := netnsOf(t, e.infraPid(pod)); got != netns {
		t.Errorf("the pod's network namespace is %s after the restarts, was %s", got, netns)
	}
	// Stored once, by the first app: every later one got it back.
	if after := e.heldEntry(t); after.StoredAt != entry.StoredAt {
		t.Errorf("the entry was stored again at %s after the restarts, first at %s", after.StoredAt, entry.StoredAt)
	}
	if n := e.inspectInt(holderCtr, ".RestartCount"); n != 0 {
		t.Errorf("the holder's container restarted %d times, want 0", n)
	}
}

// restartApp ends the app container's process with sig and waits for the
// pod's restart policy to bring it back: the restart count is n, and the
// n+1st ready line is logged by a new process in the pod's network
// namespace.
func (e *engine) restartApp(t testing.TB, sig syscall.Signal, n int, netns string) {
	t.Helper()
	pid := e.runningPid(webCtr, 0)
	// A signal other than SIGKILL reaches a pid namespace's init (the
	// app) only if it handles it, as webapp does SIGTERM (pid_namespaces(7)).
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill -%d %d (the app container's process): %v", sig, pid, err)
	}
	e2etest.WaitFor(t, startTimeout, fmt.Sprintf("restart %d of the app container", n), func() bool {
		return e.inspectInt(webCtr, ".RestartCount") == n
	})
	e2etest.WaitFor(t, startTimeout, fmt.Sprintf("the app's ready line after restart %d", n), func() bool {
		return strings.Count(e.logs(webCtr), readyLine) == 1+n
	})
	newPid := e.runningPid(webCtr, pid)
	if got := netnsOf(t, newPid); got != netns {
		t.Fatalf("restart %d: the new app runs in network namespace %s, the pod's was %s", n, got, netns)
	}
	t.Logf("restart %d: app pid %d ended by signal %d, pid %d serves", n, pid, sig, newPid)
}

// teardown runs podman kube down, removes the images and the volume, and
// fails the test if podman still has anything; then it ends the namespace
// and removes the cgroups podman left.
func teardown(t testing.TB, e *engine, manifest string) {
	e.clearCgroupDirs()
	if _, err := e.podman("kube", "down", manifest); err != nil {
		t.Errorf("kube down: %v", err)
		e.podman("pod", "rm", "--all", "--force")
	}
	e.podman("volume", "rm", "--all", "--force")
	e.podman("rmi", "--all", "--force")
	left, err := e.leftovers()
	if err != nil {
		t.Errorf("after teardown: %v", err)
	} else if len(left) > 0 {
		t.Errorf("podman still has after teardown: %v", left)
	}
	e.killNamespace()
	if left := e.removeCgroupParents(); len(left) > 0 {
		t.Errorf("cgroups left after teardown: %v", left)
	}
}

// logs returns the container's log (webapp and fdclient write to stderr);
// podman keeps it across restarts of the container.
func (e *engine) logs(name string) string {
	out, _ := e.run("podman", "logs", name)
	return out
}

// infraPid is the pid of the pod's infra container (catatonit), which
// holds the pod's namespaces.
func (e *engine) infraPid(pod string) int {
	e.t.Helper()
	id := e.mustPodman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod)
	return e.runningPid(id, 0)
}

func netnsOf(t testing.TB, pid int) string {
	t.Helper()
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// heldEntry is the entry "web" as fdclient list --json shows it inside the
// holder's container.
type heldEntryJSON struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	StoredAt string `json:"stored_at"`
	OwnerUID int    `json:"owner_uid"`
	OwnerPID int    `json:"owner_pid"`
}

func (e *engine) heldEntry(t testing.TB) heldEntryJSON {
	t.Helper()
	out := e.mustPodman("exec", holderCtr, "/usr/local/bin/fdclient", "list", "--json")
	var entries []heldEntryJSON
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("fdclient list --json: %v\n%s", err, out)
	}
	if len(entries) != 1 || entries[0].Name != "web" {
		t.Fatalf("held entries %+v, want web only", entries)
	}
	return entries[0]
}

// established counts the TCP connections to the app's port in the pod's
// network namespace (ss(8)).
func established(t testing.TB, infra int) int {
	t.Helper()
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(infra), "-n", "ss", "-Htn", "state", "established", "( sport = :8080 )").Output()
	if err != nil {
		t.Fatalf("ss in the pod's network namespace: %v", err)
	}
	return strings.Count(string(out), "\n")
}

// wrkLoad is wrk running in the pod's network namespace.
type wrkLoad struct {
	cmd  *exec.Cmd
	out  string
	done chan error
}

// startWrk starts wrk -t2 -c32 against the app inside the pod's network
// namespace, for at most two minutes; stop interrupts it sooner.
func startWrk(t testing.TB, dir string, infra int) *wrkLoad {
	t.Helper()
	w := &wrkLoad{out: filepath.Join(dir, "wrk.out"), done: make(chan error, 1)}
	f, err := os.Create(w.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// nsenter without -p executes wrk in its own process: signals reach wrk.
	w.cmd = exec.Command("nsenter", "-t", strconv.Itoa(infra), "-n", "wrk", "-t2", "-c"+strconv.Itoa(wrkConnections), "-d120s",
		"--latency", "--timeout", "10s", "http://"+webAddr+"/")
	w.cmd.Stdout, w.cmd.Stderr = f, f
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.done
	})
	return w
}

// stop interrupts wrk, on which it prints its report, and parses it.
func (w *wrkLoad) stop(t testing.TB) e2etest.WrkResult {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case err = <-w.done:
		w.done <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("wrk did not stop on SIGINT")
	}
	out, rerr := os.ReadFile(w.out)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	res, err := e2etest.ParseWrk(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return res
}
