package systemd

import (
	"errors"
	"fmt"
	"io"
	"net"

	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// buildPackage builds the Debian package with "make deb" into dir and
// returns its path.
func buildPackage(t testing.TB, dir string) string {
	t.Helper()
	for _, tool := range []string{"make", "dpkg-deb"} {
		_, err := exec.LookPath(tool)
		testutil.NeedPeer(t, err == nil, "%s (Debian packages make, dpkg): %v", tool, err)
	}
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-C", root, "BIN="+filepath.Join(dir, "bin"), "DIST="+filepath.Join(dir, "dist"), "deb")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "dist", "fdholder_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v, want one fdholder_VERSION_amd64.deb", debs)
	}
	return debs[0]
}

// TestPackage installs the Debian package with dpkg -i in a machine booted
// on an overlay of the host's root (nothing reaches the host's disk), and
// uses it as a new user would, editing nothing of the package: the socket
// is enabled and listening after the install and starts the holder at the
// first client; the man pages are found; the example service, copied from
// the package's examples, serves through fdclient exec, and is restarted
// under a stream of connections with none refused; kill -9 of the holder
// loses no entry (the file descriptor store); installing the package
// again (an upgrade) reloads the holder in place; dpkg --purge stops it all
// and leaves no file of the package behind, only dpkg's own records and
// logs.
func TestPackage(t *testing.T) {
	needMachine(t)
	out, err := exec.Command("/usr/bin/python3", "-c", "import gunicorn").CombinedOutput()
	testutil.NeedPeer(t, err == nil, "the example runs /usr/bin/python3 -m gunicorn (apt-get install python3-gunicorn): %v %s", err, out)
	dir := scratchDir(t)
	deb := buildPackage(t, dir)
	m := bootOverlay(t, dir)

	// Docker images ship a policy-rc.d that forbids maintainer scripts to
	// start anything (invoke-rc.d(8)); a Debian machine has none. Its
	// removal stays in the overlay.
	m.must("rm", "-f", "/usr/sbin/policy-rc.d")
	// man-db's trigger would rebuild the whole man database (a minute on
	// a busy machine); "man -w" needs none. This is debconf's
	// man-db/auto-update=false.
	m.must("rm", "-f", "/var/lib/man-db/auto-update")

	// The install enables and starts the socket, not the holder.
	m.must("dpkg", "-i", deb)
	if s := strings.TrimSpace(m.must("systemctl", "is-enabled", "fdholderd.socket")); s != "enabled" {
		t.Errorf("after dpkg -i: fdholderd.socket is %q, want enabled", s)
	}
	if s := m.show("fdholderd.socket", "ActiveState"); s != "active" {
		t.Fatalf("after dpkg -i: fdholderd.socket ActiveState %q, want active", s)
	}
	if s := m.show("fdholderd.service", "ActiveState"); s != "inactive" {
		t.Errorf("before any client: fdholderd.service ActiveState %q, want inactive", s)
	}
	for page, want := range map[string]string{"fdholderd": "/usr/share/man/man8/fdholderd.8.gz", "fdclient": "/usr/share/man/man1/fdclient.1.gz", "fdholder-policy": "/usr/share/man/man5/fdholder-policy.5.gz"} {
		if got := strings.TrimSpace(m.must("man", "-w", page)); got != want {
			t.Errorf("man -w %s: %q, want %q", page, got, want)
		}
	}
	if got := m.must("fdclient", "list", "--names"); got != "" {
		t.Errorf("a fresh holder lists %q", got)
	}
	if s := m.show("fdholderd.service", "ActiveState"); s != "active" {
		t.Errorf("after a client: fdholderd.service ActiveState %q, want active", s)
	}

	// The example service, as the package ships it.
	m.must("cp", "/usr/share/doc/fdholder/examples/example-web.service", "/etc/systemd/system/")
	m.must("mkdir", "-p", "/srv/example-web")
	m.must("cp", "/usr/share/doc/fdholder/examples/gunicorn.conf.py", "/srv/example-web/")
	m.must("sh", "-c", "cat >/srv/example-web/app.py <<'EOF'\n"+
		"def app(environ, start_response):\n"+
		"    start_response('200 OK', [('Content-Type', 'text/plain'), ('Connection', 'close')])\n"+
		"    return [b'hello from the package\\n']\nEOF")
	// gunicorn's debug log (GUNICORN_CMD_ARGS, read by gunicorn itself)
	// names every worker booted and exiting and every connection closed
	// without a reply: the journal below explains a failed request.
	m.must("mkdir", "-p", "/etc/systemd/system/example-web.service.d")
	m.must("sh", "-c", "printf '[Service]\\nEnvironment=GUNICORN_CMD_ARGS=--log-level=debug\\n' >/etc/systemd/system/example-web.service.d/debug.conf")
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "start", "example-web.service")
	m.waitFor("the example to answer", func() bool { return get(m) == nil })
	before := list(t, m, "/usr/bin/fdclient", "/run/fdholder/fdholder.sock")

	// Tab completion as an interactive bash with bash-completion gets it:
	// its loader finds the package's file by the command's name, and the
	// held names come from the running holder.
	script := `source /usr/share/bash-completion/bash_completion
_completion_loader fdclient
complete -p fdclient
COMP_WORDS=(fdclient delete ""); COMP_CWORD=2; _fdclient
printf 'name: %s\n' "${COMPREPLY[@]}"`
	completed, err := m.run("bash", "--norc", "--noprofile", "-i", "-c", script)
	if err != nil || !regexp.MustCompile(`(?m)^complete -F _fdclient fdclient$`).MatchString(completed) || !strings.Contains(completed, "name: web\n") {
		t.Errorf("bash completion of the installed package: %v\n%s", err, completed)
	}

	// Restarts under a stream of connections: none refused.
	l := startLoad(t, m)
	for i := range 3 {
		served := l.served()
		m.must("systemctl", "restart", "example-web.service")
		m.waitFor(fmt.Sprintf("a reply after restart %d", i+1), func() bool { return l.served() > served+2 })
	}
	served, refused, failed := l.stop()
	if refused > 0 || len(failed) > 0 || served == 0 {
		journal, _ := m.run("journalctl", "--no-pager", "-o", "short-precise", "-u", "example-web.service")
		t.Errorf("through 3 restarts: %d served, %d refused, other errors %v; want none refused or failed; journal of example-web.service:\n%s", served, refused, failed, journal)
	}
	t.Logf("through 3 restarts of the example: %d requests served, %d refused", served, refused)

	// kill -9 of the holder: systemd restarts it, the store gives every
	// entry back, and the example keeps serving on the same socket.
	pid := m.show("fdholderd.service", "MainPID")
	m.must("kill", "-9", pid)
	m.waitFor("the holder restarted", func() bool {
		p := m.show("fdholderd.service", "MainPID")
		return p != pid && p != "0" && m.show("fdholderd.service", "ActiveState") == "active"
	})
	if after := list(t, m, "/usr/bin/fdclient", "/run/fdholder/fdholder.sock"); !reflect.DeepEqual(after, before) {
		t.Errorf("after kill -9 of the holder:\n got %+v\nwant %+v", after, before)
	}
	m.must("systemctl", "restart", "example-web.service")
	m.waitFor("the example to answer after the holder's recovery", func() bool { return get(m) == nil })

	// An upgrade of the package (dpkg -i again: postinst configure with
	// the old version) reloads the holder in place: same pid, every entry
	// handed across execve, no restart.
	pid = m.show("fdholderd.service", "MainPID")
	m.must("dpkg", "-i", deb)
	m.waitFor("the upgrade in place", func() bool {
		j, _ := m.run("journalctl", "--no-pager", "-u", "fdholderd.service")
		return strings.Contains(j, `"msg":"recovered","source":"upgrade","entries":1,`)
	})
	if p := m.show("fdholderd.service", "MainPID"); p != pid {
		t.Errorf("after upgrading the package: MainPID %s, want %s (upgraded in place)", p, pid)
	}
	if after := list(t, m, "/usr/bin/fdclient", "/run/fdholder/fdholder.sock"); !reflect.DeepEqual(after, before) {
		t.Errorf("after upgrading the package:\n got %+v\nwant %+v", after, before)
	}
	if err := get(m); err != nil {
		t.Errorf("the example after the upgrade: %v", err)
	}

	// Purge: the example is the user's own; the package goes entirely.
	m.must("systemctl", "stop", "example-web.service")
	m.must("rm", "-r", "/etc/systemd/system/example-web.service", "/etc/systemd/system/example-web.service.d", "/srv/example-web")
	m.must("dpkg", "--purge", "fdholder")
	m.must("systemctl", "daemon-reload")
	for _, unit := range []string{"fdholderd.socket", "fdholderd.service"} {
		if s := m.show(unit, "LoadState"); s != "not-found" {
			t.Errorf("after purge: %s LoadState %q, want not-found", unit, s)
		}
		if s := m.show(unit, "ActiveState"); s != "inactive" {
			t.Errorf("after purge: %s ActiveState %q, want inactive", unit, s)
		}
	}
	if out, err := m.run("sh", "-c", "ps -eo comm | grep -x -e fdholderd -e gunicorn"); err == nil {
		t.Errorf("after purge, still running:\n%s", out)
	}
	// Every file the machine changed is in the overlay's upper layer.
	// What may stay: dpkg's records and every log, systemd's own state
	// from its boot, and directories the install created parents of.
	changed := strings.Fields(m.must("find", "/run/overlay-upper", "-not", "-type", "d", "-printf", "/%P\\n"))
	kept := regexp.MustCompile(`^/(usr/sbin/policy-rc\.d$|var/lib/man-db/auto-update$|var/lib/dpkg/|var/log/|var/cache/|var/lib/systemd/(catalog|random-seed|timers|pstore|coredump|linger|backlight|rfkill|timesync)|etc/machine-id$|etc/\.pwd\.lock$|etc/ld\.so\.cache$)`)
	var left []string
	for _, f := range changed {
		if !kept.MatchString(f) || strings.Contains(f, "fdholder") && !strings.HasPrefix(f, "/var/lib/dpkg/") && !strings.HasPrefix(f, "/var/log/") {
			left = append(left, f)
		}
	}
	sort.Strings(left)
	if len(left) > 0 {
		t.Errorf("after dpkg --purge, left behind:\n  %s", strings.Join(left, "\n  "))
	}
	dirs := m.must("find", "/run/overlay-upper", "-type", "d", "-path", "*fdholder*")
	if strings.TrimSpace(dirs) != "" {
		t.Errorf("after dpkg --purge, directories left behind:\n%s", dirs)
	}
}

// get makes one HTTP request to the example on 127.0.0.1:8080 in the
// machine's network namespace and checks its reply.
func get(m *machine) error {
	return m.inNetns(func() error { return request(time.Now().Add(5 * time.Second)) })
}

func request(deadline time.Time) error {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:8080", time.Until(deadline))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(b), "HTTP/1.0 200") || !strings.HasSuffix(string(b), "hello from the package\n") {
		return fmt.Errorf("reply %q", b)
	}
	return nil
}

// load makes requests to the example one after another, from the
// machine's network namespace, until stopped, counting the replies and
// the refused connects.
type load struct {
	mu      sync.Mutex
	n       int
	refused int
	failed  []string
	done    chan struct{}
	ended   chan struct{}
}

func startLoad(t testing.TB, m *machine) *load {
	l := &load{done: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(l.ended)
		err := m.inNetns(func() error {
			for {
				select {
				case <-l.done:
					return nil
				default:
				}
				// A connection made while the example restarts waits in
				// the held socket's queue for the next gunicorn.
				err := request(time.Now().Add(waitTimeout))
				l.mu.Lock()
				switch {
				case err == nil:
					l.n++
				case errors.Is(err, syscall.ECONNREFUSED):
					l.refused++
				default:
					// The time finds the request in the journal.
					l.failed = append(l.failed, time.Now().UTC().Format("15:04:05.000000 ")+err.Error())
				}
				l.mu.Unlock()
			}
		})
		if err != nil {
			l.mu.Lock()
			l.failed = append(l.failed, err.Error())
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *load) served() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// stop ends the load and returns its counts.
func (l *load) stop() (served, refused int, failed []string) {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	<-l.ended
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.refused, l.failed
}
