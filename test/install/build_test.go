package install

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// needTools skips (or in CI fails) the test when a tool is missing.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		_, err := exec.LookPath(tool)
		testutil.NeedPeer(t, err == nil, "%s is not installed (see .ci/run's packages): %v", tool, err)
	}
}

// makeIn runs make in dir with args, and fails the test on error.
func makeIn(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-C", dir}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func moduleRoot(t testing.TB) string {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// changelogVersion is the version of the top entry of the changelog: the
// one the release build stamps in.
func changelogVersion(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "deploy", "debian", "changelog"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^fdholder \(([^)]+)\)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no version in the changelog's first line")
	}
	return string(m[1])
}

// copyCheckout copies the tracked files of the checkout (as they are in
// the work tree) to dir, without .git.
func copyCheckout(t testing.TB, dir string) {
	t.Helper()
	root := moduleRoot(t)
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, f)
		fi, err := os.Lstat(src)
		if err != nil {
			continue // deleted in the work tree
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReleaseBuild builds the programs twice with "make": once in the
// checkout, once in a copy elsewhere without .git (so that a path or VCS
// stamp in a binary would show), and compares them byte for byte. Each
// is static (no interpreter, no shared library) and prints the
// changelog's version for --version.
func TestReleaseBuild(t *testing.T) {
	t.Parallel()
	needTools(t, "make", "git")
	root := moduleRoot(t)
	base := testutil.ShortDir(t)
	first, second, copyDir := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "src")
	makeIn(t, root, "BIN="+first)
	copyCheckout(t, copyDir)
	makeIn(t, copyDir, "BIN="+second)
	version := changelogVersion(t)
	for _, prog := range []string{"fdholderd", "fdclient"} {
		t.Run(prog, func(t *testing.T) {
			a, err := os.ReadFile(filepath.Join(first, prog))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(second, prog))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("two builds of %s differ (%d and %d bytes)", prog, len(a), len(b))
			}
			if bytes.Contains(a, []byte(root)) {
				t.Errorf("%s contains the checkout's path %s", prog, root)
			}
			f, err := elf.Open(filepath.Join(first, prog))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s has an interpreter: not static", prog)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("%s needs %v: not static", prog, libs)
			}
			out, err := exec.Command(filepath.Join(first, prog), "--version").Output()
			if err != nil || string(out) != prog+" "+version+"\n" {
				t.Errorf("%s --version: %q, %v; want %q", prog, out, err, prog+" "+version+"\n")
			}
		})
	}
	// make install elsewhere than /usr: the units name the binaries and
	// the policy where they went.
	dest := filepath.Join(base, "dest")
	makeIn(t, root, "BIN="+first, "DESTDIR="+dest, "PREFIX=/opt/fdh", "install")
	for _, f := range []string{"sbin/fdholderd", "bin/fdclient", "etc/fdholder/policy.toml", "share/man/man8/fdholderd.8",
		"share/bash-completion/completions/fdclient", "share/zsh/vendor-completions/_fdclient", "share/fish/vendor_completions.d/fdclient.fish"} {
		if _, err := os.Stat(filepath.Join(dest, "opt/fdh", f)); err != nil {
			t.Errorf("make install PREFIX=/opt/fdh: %v", err)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "opt/fdh/lib/systemd/system/fdholderd.service"))
	if err != nil || !bytes.Contains(unit, []byte("\nExecStart=/opt/fdh/sbin/fdholderd --log-format json --policy /opt/fdh/etc/fdholder/policy.toml\n")) {
		t.Errorf("make install PREFIX=/opt/fdh: fdholderd.service (%v):\n%s", err, unit)
	}
	example, err := os.ReadFile(filepath.Join(dest, "opt/fdh/share/doc/fdholder/examples/example-web.service"))
	if err != nil || !bytes.Contains(example, []byte("\nExecStart=/opt/fdh/bin/fdclient exec ")) {
		t.Errorf("make install PREFIX=/opt/fdh: example-web.service (%v):\n%s", err, example)
	}

	// The man pages: same bytes too, and with the version.
	for _, page := range []string{"fdholderd.8", "fdclient.1", "fdholder-policy.5"} {
		a, errA := os.ReadFile(filepath.Join(first, "man", page))
		b, errB := os.ReadFile(filepath.Join(second, "man", page))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("man page %s: %v, %v, or the two builds differ", page, errA, errB)
		}
		if !bytes.Contains(a, []byte(`"fdholder `+version+`"`)) {
			t.Errorf("man page %s does not carry the version %s", page, version)
		}
	}
}
