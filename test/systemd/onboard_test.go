package systemd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// legacyUnit is a service that knows nothing of fdholder: gunicorn binds
// its port itself. DIR is replaced by the test's directory. KillMode=mixed
// is gunicorn's advice for systemd (SIGTERM to the master, which stops its
// workers gracefully); the short --timeout and --graceful-timeout bound a
// stop of idle workers, which notice SIGTERM only when their select(2)
// times out (at half --timeout, gunicorn/workers/sync.py).
const legacyUnit = `[Unit]
Description=A server that binds its own port

[Service]
ExecStart=/usr/bin/python3 -m gunicorn --bind 127.0.0.1:8080 --workers 2 ` + gunicornTimeouts + ` app:app
WorkingDirectory=DIR/web
KillMode=mixed
`

const gunicornTimeouts = "--timeout 6 --graceful-timeout 3"

// onboardDropIn is step 2 of "Onboarding a running service" in
// docs/operations.md, as "systemctl edit" would write it. DIR is the
// directory of the binaries.
const onboardDropIn = `[Unit]
Requires=fdholderd.socket
After=fdholderd.socket
[Service]
ExecStart=
ExecStart=DIR/fdclient exec web=tcp:127.0.0.1:8080 -- /usr/bin/python3 -m gunicorn --config gunicorn.conf.py --workers 2 ` + gunicornTimeouts + ` app:app
`

// TestOnboardingUnderSystemd follows "Onboarding a running service" of
// docs/operations.md under a real systemd and the shipped holder units,
// with wrk's load running throughout: a unit whose gunicorn binds its own
// port runs; fdclient adopt takes its listener; a drop-in makes ExecStart
// fdclient exec; systemctl restart. wrk reports no socket error across the
// three steps, and the new gunicorn serves the adopted socket.
func TestOnboardingUnderSystemd(t *testing.T) {
	needMachine(t)
	out, err := exec.Command("/usr/bin/python3", "-c", "import gunicorn").CombinedOutput()
	testutil.NeedPeer(t, err == nil, "the service runs /usr/bin/python3 -m gunicorn (apt-get install python3-gunicorn): %v %s", err, out)
	wrk, err := exec.LookPath("wrk")
	testutil.NeedPeer(t, err == nil, "wrk (apt-get install wrk): %v", err)
	dir := scratchDir(t)
	buildBinaries(t, dir)
	for path, content := range map[string]string{
		"web/app.py":               "def app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'legacy\\n']\n",
		"units/legacy-web.service": strings.ReplaceAll(legacyUnit, "DIR", dir),
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, path), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyGunicornConf(t, filepath.Join(dir, "web"))
	m := boot(t, dir)
	fdclient := dir + "/fdclient"
	const ctl = "/run/fdholder/fdholder.sock"

	m.must("systemctl", "start", "fdholderd.socket", "legacy-web.service")
	m.waitAnswer("the legacy service to answer", "legacy\n")

	// Load, from inside the machine's network namespace (nsenter executes
	// wrk itself), until the test interrupts it. A request waits in the
	// held socket's queue while the service restarts: on a loaded machine
	// that can take longer than wrk's default timeout, which would count
	// it as an error although it is answered.
	var report bytes.Buffer
	load := exec.Command("nsenter", "-t", strconv.Itoa(m.pid), "-n", wrk, "-t2", "-c32", "-d60s", "--timeout", "40s", "http://127.0.0.1:8080/")
	load.Stdout, load.Stderr = &report, &report
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	loadDone := make(chan struct{})
	go func() {
		load.Wait()
		close(loadDone)
	}()
	t.Cleanup(func() {
		load.Process.Kill()
		<-loadDone
	})

	// 1. Adopt.
	pid := m.show("legacy-web.service", "MainPID")
	dry := m.must(fdclient, "--socket", ctl, "adopt", "--dry-run", "--pid", pid, "web", "tcp:127.0.0.1:8080")
	if !strings.HasPrefix(dry, `would adopt "web" from fd `) {
		t.Fatalf("adopt --dry-run: %q", dry)
	}
	adopted := m.must(fdclient, "--socket", ctl, "adopt", "--pid", pid, "web", "tcp:127.0.0.1:8080")
	t.Logf("fdclient adopt: %s", strings.TrimSpace(adopted))
	held := list(t, m, fdclient, ctl)
	if len(held) != 1 || held[0].Name != "web" || held[0].Address != "127.0.0.1:8080" || !held[0].Listening {
		t.Fatalf("held after adopt: %+v, want web listening on 127.0.0.1:8080", held)
	}

	// 2. ExecStart through fdclient exec; 3. restart.
	m.must("mkdir", "-p", "/run/systemd/system/legacy-web.service.d")
	dropIn := m.hostPath("/run/systemd/system/legacy-web.service.d/fdholder.conf")
	if err := os.WriteFile(dropIn, []byte(strings.ReplaceAll(onboardDropIn, "DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	m.must("systemctl", "daemon-reload")
	if _, err := m.run("systemctl", "restart", "legacy-web.service"); err != nil {
		j, _ := m.run("journalctl", "--no-pager", "-n", "80")
		t.Fatalf("%v\n%s", err, j)
	}
	if newPID := m.show("legacy-web.service", "MainPID"); newPID == pid || newPID == "0" {
		t.Fatalf("MainPID %s after the restart, want a new process (was %s)", newPID, pid)
	}
	m.waitAnswer("the restarted service to answer", "legacy\n")
	if after := list(t, m, fdclient, ctl); len(after) != 1 || after[0] != held[0] {
		t.Errorf("held after the restart: %+v, want the adopted entry unchanged: %+v", after, held)
	}
	// The new gunicorn serves the held socket: its ExecStart is fdclient
	// exec, which execs it with LISTEN_FDS.
	if env := m.must("sh", "-c", "tr '\\0' '\\n' < /proc/$(systemctl show --value -p MainPID legacy-web.service)/environ"); !strings.Contains(env, "LISTEN_FDNAMES=web\n") {
		t.Errorf("the restarted service's environment has no LISTEN_FDNAMES=web:\n%s", env)
	}

	// wrk's report: it prints a "Socket errors" line only when there
	// were some.
	// The load ran across all three steps; stop it now.
	load.Process.Signal(syscall.SIGINT)
	select {
	case <-loadDone:
	case <-time.After(waitTimeout):
		t.Fatalf("wrk did not stop on SIGINT")
	}
	rep := report.String()
	m2 := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(rep)
	if m2 == nil || m2[1] == "0" {
		t.Fatalf("wrk completed no request:\n%s", rep)
	}
	if strings.Contains(rep, "Socket errors") || strings.Contains(rep, "Non-2xx") {
		t.Errorf("wrk across adopt, drop-in and restart:\n%s\nwant no socket error and no error reply", rep)
	}
	t.Logf("wrk -t2 -c32 across adopt, drop-in and systemctl restart: %s requests, no socket error", m2[1])
	if _, err := m.run("systemctl", "stop", "legacy-web.service", "fdholderd.service", "fdholderd.socket"); err != nil {
		j, _ := m.run("journalctl", "--no-pager", "-n", "80")
		t.Fatalf("%v\n%s", err, j)
	}
}
