package systemd

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// metricsDropIn returns the drop-in docs/operations.md gives for serving
// metrics under the shipped unit (a TCP address, and AF_INET allowed),
// with the paths boot puts in the units. Its port, 9727, is fixed: the
// machine has a network namespace of its own, where nothing else binds.
func metricsDropIn(t testing.TB, dir string) []byte {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := bytes.Cut(doc, []byte("```ini\n[Service]\nExecStart=\n"))
	block, _, ok2 := bytes.Cut(after, []byte("```"))
	if !ok || !ok2 || !bytes.Contains(block, []byte("--metrics-address")) {
		t.Fatal("docs/operations.md has no drop-in for the metrics")
	}
	b := append([]byte("[Service]\nExecStart=\n"), block...)
	b = bytes.ReplaceAll(b, []byte("/usr/sbin/fdholderd"), []byte(dir+"/fdholderd"))
	return bytes.ReplaceAll(b, []byte("/etc/fdholder/"), []byte(dir+"/"))
}

// TestMetricsUnderSystemd serves metrics from the shipped unit with the
// documented drop-in: the hardened holder serves them, and they show the
// entry, its queue, and the copy into the file descriptor store.
func TestMetricsUnderSystemd(t *testing.T) {
	needMachine(t)
	dir := scratchDir(t)
	buildBinaries(t, dir)
	m := boot(t, dir)
	fdclient := dir + "/fdclient"
	const ctl = "/run/fdholder/fdholder.sock"

	dropIns := m.hostPath("/run/systemd/system/fdholderd.service.d")
	if err := os.MkdirAll(dropIns, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropIns, "metrics.conf"), metricsDropIn(t, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "start", "fdholderd.socket")
	m.must(fdclient, "--socket", ctl, "listen", "web", "tcp:127.0.0.1:8080")
	m.waitFor("fdholderd.service active", func() bool { return m.show("fdholderd.service", "ActiveState") == "active" })

	var body string
	m.waitFor("the metrics to show the entry", func() bool {
		var err error
		body, err = scrapeInMachine(m, "127.0.0.1:9727")
		return err == nil && strings.Contains(body, `fdholder_entries{network="tcp"} 1`)
	})
	for _, want := range []string{
		`fdholder_listener_queued_connections{name="web"} 0`,
		`fdholder_listener_backlog{name="web"} `,
		// The entry's socket and metadata went to the store in one change.
		`fdholder_fdstore_operations_total{op="store"} 1`,
		`fdholder_fdstore_failures_total{op="store"} 0`,
		// The holder's RLIMIT_NOFILE: LimitNOFILE=65536, or the hard limit
		// of the machine it runs on if that is lower.
		"process_max_fds " + strings.TrimSpace(m.must("prlimit", "--pid", m.show("fdholderd.service", "MainPID"),
			"--nofile", "--output", "SOFT", "--noheadings")) + "\n",
		"process_open_fds ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics under the shipped unit lack %q:\n%s", want, body)
		}
	}
}

// scrapeInMachine fetches /metrics at addr inside the machine's network
// namespace. The connection is made on the namespace's thread; HTTP/1.0
// by hand, because net/http would dial from another goroutine.
func scrapeInMachine(m *machine, addr string) (string, error) {
	var out []byte
	err := m.inNetns(func() error {
		c, err := net.DialTimeout("tcp", addr, waitTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: fdholderd\r\n\r\n"); err != nil {
			return err
		}
		out, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return "", err
	}
	head, body, ok := bytes.Cut(out, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.0 200")) && !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		return "", fmt.Errorf("reply: %.200q", out)
	}
	return string(body), nil
}
