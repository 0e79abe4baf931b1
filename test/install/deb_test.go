package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// TestPackage builds the Debian package with "make deb", checks what it
// installs where, and runs lintian on it: no error, no warning. Building
// it twice gives the same bytes.
func TestPackage(t *testing.T) {
	t.Parallel()
	needTools(t, "make", "dpkg-deb", "lintian")
	root := moduleRoot(t)
	base := testutil.ShortDir(t)
	dist := filepath.Join(base, "dist")
	makeIn(t, root, "BIN="+filepath.Join(base, "bin"), "DIST="+dist, "deb")
	version := changelogVersion(t)
	deb := filepath.Join(dist, "fdholder_"+version+"_amd64.deb")

	out, err := exec.Command("dpkg-deb", "--contents", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v", err)
	}
	for _, want := range []string{
		"-rwxr-xr-x root/root .* ./usr/sbin/fdholderd$",
		"-rwxr-xr-x root/root .* ./usr/bin/fdclient$",
		" ./lib/systemd/system/fdholderd.socket$",
		" ./lib/systemd/system/fdholderd.service$",
		" ./etc/fdholder/policy.toml$",
		" ./usr/share/man/man8/fdholderd.8.gz$",
		" ./usr/share/man/man1/fdclient.1.gz$",
		" ./usr/share/man/man5/fdholder-policy.5.gz$",
		" ./usr/share/bash-completion/completions/fdclient$",
		" ./usr/share/zsh/vendor-completions/_fdclient$",
		" ./usr/share/fish/vendor_completions.d/fdclient.fish$",
		" ./usr/share/doc/fdholder/changelog.gz$",
		" ./usr/share/doc/fdholder/copyright$",
		" ./usr/share/doc/fdholder/README.md.gz$",
		" ./usr/share/doc/fdholder/examples/example-web.service$",
		" ./usr/share/doc/fdholder/examples/gunicorn.conf.py$",
	} {
		if !matchLine(string(out), want) {
			t.Errorf("the package has no line matching %q:\n%s", want, out)
		}
	}
	conffiles, err := exec.Command("dpkg-deb", "--ctrl-tarfile", deb).Output()
	if err != nil || !bytes.Contains(conffiles, []byte("/etc/fdholder/policy.toml\n")) {
		t.Errorf("the control archive does not list /etc/fdholder/policy.toml as a conffile: %v", err)
	}
	// The units name the binaries where the package puts them.
	unit := extract(t, deb, "./lib/systemd/system/fdholderd.service")
	if !strings.Contains(unit, "\nExecStart=/usr/sbin/fdholderd ") || !strings.Contains(unit, "--policy /etc/fdholder/policy.toml") {
		t.Errorf("fdholderd.service does not start /usr/sbin/fdholderd with the packaged policy:\n%s", unit)
	}

	lint := exec.Command("lintian", "--fail-on", "error,warning", deb)
	lintOut, err := lint.CombinedOutput()
	if err != nil {
		t.Errorf("lintian: %v\n%s", err, lintOut)
	}
	for _, l := range strings.Split(string(lintOut), "\n") {
		if strings.HasPrefix(l, "E:") || strings.HasPrefix(l, "W:") {
			t.Errorf("lintian: %s", l)
		}
	}

	// A second build of the package: the same bytes.
	dist2 := filepath.Join(base, "dist2")
	makeIn(t, root, "BIN="+filepath.Join(base, "bin"), "DIST="+dist2, "deb")
	a, _ := os.ReadFile(deb)
	b, err := os.ReadFile(filepath.Join(dist2, filepath.Base(deb)))
	if err != nil || !bytes.Equal(a, b) {
		t.Errorf("two builds of the package differ (%v)", err)
	}
}

// matchLine reports whether a line of text matches re.
func matchLine(text, re string) bool {
	return regexp.MustCompile("(?m)" + re).MatchString(text)
}

// extract returns one file of the package's data archive.
func extract(t testing.TB, deb, path string) string {
	t.Helper()
	data, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xOf - "$2"`, "sh", deb, path).Output()
	if err != nil {
		t.Fatalf("extract %s: %v", path, err)
	}
	return string(data)
}
