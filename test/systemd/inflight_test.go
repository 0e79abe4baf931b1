package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// TestStoreDurableUnderInFlightAttack (issue 8, defect 1) runs the shipped
// units with RLIMIT_NOFILE 1024 and a policy that lets nobody get one
// name. nobody opens 120 connections and sends 20 gets on each without
// reading a reply: without bounds that put 2,400 descriptors in flight
// for the holder's uid, past its limit, so the copy of every store to the
// file descriptor store failed (ETOOMANYREFS) while the store was
// acknowledged, and a kill -9 then lost it. Now a store made during the
// attack is acknowledged only once its copy is made, and survives kill -9.
func TestStoreDurableUnderInFlightAttack(t *testing.T) {
	needMachine(t)
	dir := scratchDir(t)
	// fdholderd and fdclient as shipped, and the tests' protocol peer.
	testutil.BuildShipped(t, dir, "fdholderd", "fdclient", "fdholderd/testdata/peer")
	policy := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(policy, []byte("[[rule]]\nuser = \"nobody\"\nops = [\"get\"]\nnames = [\"pub/a\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := boot(t, dir)
	const ctl = "/run/fdholder/fdholder.sock"
	fdclient := dir + "/fdclient"
	m.must("mkdir", "-p", "/run/systemd/system/fdholderd.service.d", "/run/systemd/system/fdholderd.socket.d")
	m.must("sh", "-c", "printf '[Service]\\nLimitNOFILE=1024\\nExecStart=\\nExecStart="+dir+"/fdholderd --log-format json --policy "+policy+
		"\\n' >/run/systemd/system/fdholderd.service.d/test.conf")
	m.must("sh", "-c", "printf '[Socket]\\nSocketMode=0666\\n' >/run/systemd/system/fdholderd.socket.d/test.conf")
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "start", "fdholderd.socket")
	m.must(fdclient, "--socket", ctl, "listen", "pub/a", "tcp:127.0.0.1:8080")

	// The attacker, as nobody, inside the machine.
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(m.pid), "-a", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		dir+"/peer", ctl, "flood", "get", "pub/a", "120", "20")
	stop := testutil.StartUntilLine(t, cmd, "flooding")

	// A store during the attack: acknowledged, so durable.
	m.must(fdclient, "--socket", ctl, "listen", "during", "tcp:127.0.0.1:8081")
	pid := m.show("fdholderd.service", "MainPID")
	m.must("kill", "-9", pid)
	m.waitFor("the holder restarted", func() bool {
		p := m.show("fdholderd.service", "MainPID")
		return p != pid && p != "0" && m.show("fdholderd.service", "ActiveState") == "active"
	})
	stop()
	var names []string
	for _, e := range list(t, m, fdclient, ctl) {
		names = append(names, e.Name)
	}
	if strings.Join(names, " ") != "during pub/a" {
		journal, _ := m.run("journalctl", "--no-pager", "-u", "fdholderd.service", "-n", "40")
		t.Errorf("after kill -9 during the attack the holder holds %q, want during and pub/a; journal:\n%s", names, journal)
	}
	m.must("systemctl", "stop", "fdholderd.service", "fdholderd.socket")
}
