package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// sharedSocketDir is the directory of sharedSocket.
func sharedSocketDir(t testing.TB) string { return filepath.Dir(sharedSocket(t)) }

// TestClientFindsSystemHolder is issue 12's item 3 as a new user meets it:
// a non-root service (uid 4000, no $XDG_RUNTIME_DIR, no $FDHOLDER_SOCKET)
// runs fdclient while the system's holder serves /run/fdholder/
// fdholder.sock. fdclient finds it when this user has no holder of its
// own; when the socket's mode keeps the user out it says which permission
// is missing and which flags grant it (exit 5); with no holder anywhere it
// says where it looked and what to set (exit 6). Each case runs in a
// private mount namespace with its own /run (unshare(1)), so the
// machine's /run is never touched. The words are in
// testdata/discovery.golden (-update rewrites it).
func TestClientFindsSystemHolder(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"unshare", "setpriv"} {
		_, err := exec.LookPath(tool)
		testutil.NeedPeer(t, err == nil, "%s (Debian package util-linux): %v", tool, err)
	}
	tmp := fakeTmp(t)
	pol := writePolicy(t, sharedSocketDir(t), "[[rule]]\nuid = 4000\nops = [\"list\"]\nnames = [\"**\"]\n")
	getOnly := writePolicy(t, sharedSocketDir(t), "[[rule]]\nuid = 4000\nops = [\"get\"]\nnames = [\"**\"]\n")
	const script = `set -u
mount -t tmpfs tmpfs /run || exit 90
if [ "$MODE" != none ]; then
	mkdir -m 0755 /run/fdholder
	"$HOLDER" --socket /run/fdholder/fdholder.sock --socket-mode "$MODE" --policy "$POLICY" 2>/dev/null &
	holder=$!
	while [ ! -S /run/fdholder/fdholder.sock ]; do sleep 0.01; done
fi
setpriv --reuid 4000 --regid 4000 --clear-groups env -u XDG_RUNTIME_DIR -u FDHOLDER_SOCKET TMPDIR="$TMPDIR" "$CLIENT" list
code=$?
if [ "$MODE" != none ]; then kill "$holder"; wait "$holder"; fi
exit $code
`
	tests := []struct{ name, mode, policy string }{
		{name: "the system holder admits the user", mode: "0666", policy: pol},
		{name: "the system holder's socket is 0600", mode: "0600", policy: pol},
		{name: "the system holder's policy does not grant list", mode: "0666", policy: getOnly},
		{name: "no holder anywhere", mode: "none", policy: pol},
	}
	var out strings.Builder
	for _, tt := range tests {
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
		cmd.Env = append(cleanEnv(), "MODE="+tt.mode, "HOLDER="+binary, "CLIENT="+fdclientBin, "TMPDIR="+tmp, "POLICY="+tt.policy)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if code == 90 || (err != nil && code < 0) {
			t.Fatalf("%s: the namespace could not be set up: %v\n%s", tt.name, err, stderr.String())
		}
		fmt.Fprintf(&out, "# %s (fdholderd --socket-mode %s)\n$ fdclient list   # as uid 4000\nexit %d\n", tt.name, tt.mode, code)
		if stdout.Len() > 0 {
			fmt.Fprintf(&out, "stdout:\n%s", stdout.String())
		}
		if stderr.Len() > 0 {
			fmt.Fprintf(&out, "stderr:\n%s", stderr.String())
		}
		out.WriteString("\n")
	}
	got := strings.ReplaceAll(out.String(), tmp, "TMPDIR")
	checkGolden(t, "discovery.golden", got)
}
