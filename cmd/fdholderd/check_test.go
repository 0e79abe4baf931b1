package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// TestCheck runs "fdholderd --check" as a user would before a restart or
// a SIGHUP (issue 12: it used to print ok for a broken policy, a missing
// policy file and an unknown --socket-group), and compares what it says
// with testdata/check.golden (-update rewrites it). Nothing is bound: the
// socket paths stay free.
func TestCheck(t *testing.T) {
	dir := testutil.ShortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", "[[rule]]\nuser = \"nobody\"\nops = [\"get\"]\nnames = [\"pub/*\"]\n", 0o644)
	bad := write("bad.toml", "[[rule]]\nuid = 1\nops = [\"read\"]\nnames = [\"*\"]\n", 0o644)
	empty := write("empty.toml", "", 0o644)
	file := write("file", "", 0o644)
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "h.sock")

	tests := []struct {
		name string
		args []string
	}{
		{name: "all good", args: []string{"--socket", sock, "--policy", good, "--socket-mode", "660", "--socket-group", "nogroup"}},
		{name: "a policy with an unknown op and an unknown group", args: []string{"--socket", sock, "--policy", bad, "--socket-group", "no-such-group-fdh"}},
		{name: "a missing policy file", args: []string{"--socket", sock, "--policy", filepath.Join(dir, "none.toml")}},
		{name: "an empty policy file", args: []string{"--socket", sock, "--policy", empty}},
		{name: "a socket directory others can write", args: []string{"--socket", filepath.Join(open, "h.sock")}},
		{name: "a socket path that is a file", args: []string{"--socket", file}},
		{name: "a bad flag", args: []string{"--socket-mode", "999"}},
	}
	var out strings.Builder
	for _, tt := range tests {
		code, stdout, stderr := runOnce(t, nil, append([]string{"--check"}, tt.args...)...)
		fmt.Fprintf(&out, "# %s\n$ fdholderd --check %s\nexit %d\n", tt.name, strings.Join(tt.args, " "), code)
		if stdout != "" {
			fmt.Fprintf(&out, "stdout:\n%s", stdout)
		}
		if stderr != "" {
			fmt.Fprintf(&out, "stderr:\n%s", stderr)
		}
		out.WriteString("\n")
	}
	got := strings.ReplaceAll(out.String(), dir, "DIR")
	got = strings.ReplaceAll(got, fmt.Sprintf("uid %d (fdholderd's)", os.Geteuid()), "uid UID (fdholderd's)")
	if _, err := os.Lstat(filepath.Dir(sock)); err == nil {
		t.Errorf("--check created %s", filepath.Dir(sock))
	}
	checkGolden(t, "check.golden", got)
}

// checkGolden compares got with testdata/name, or rewrites the file with
// -update ("go test ./cmd/fdholderd -run TEST -update").
func checkGolden(t testing.TB, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (-update creates it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (-update after checking the change)\n--- got:\n%s\n--- want:\n%s", golden, got, want)
	}
}
