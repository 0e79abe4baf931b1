package repo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// root is the repository's top directory.
func root(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git work tree (%v): the checks need one", err)
	}
	return strings.TrimSpace(string(out))
}

// git runs git in dir and returns its combined output and error.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustGit(t testing.TB, dir string, args ...string) {
	t.Helper()
	if out, err := git(dir, args...); err != nil {
		t.Fatalf("git %q: %v\n%s", args, err, out)
	}
}

// scratch makes a new repository holding the .ci scripts and a text file,
// committed.
func scratch(t testing.TB) string {
	t.Helper()
	src := root(t)
	dir := t.TempDir()
	mustGit(t, dir, "init", "-q")
	if err := os.Mkdir(filepath.Join(dir, ".ci"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{".ci/check-binaries", ".ci/install-hooks"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, dir, "README", []byte("text\n"))
	mustGit(t, dir, "add", ".")
	mustGit(t, dir, "commit", "-q", "-m", "start")
	return dir
}

func write(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// elf returns the start of this test binary, an ELF file.
func elf(t testing.TB) []byte {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 64)
	if _, err := f.Read(b); err != nil {
		t.Fatal(err)
	}
	if string(b[:4]) != "\x7fELF" {
		t.Fatalf("%s does not start with the ELF magic: %q", exe, b[:4])
	}
	return b
}

// TestNoTrackedBinaries runs CI's check on this repository.
func TestNoTrackedBinaries(t *testing.T) {
	cmd := exec.Command("bash", filepath.Join(root(t), ".ci", "check-binaries"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("check-binaries: %v\n%s", err, out)
	}
}

func TestCheckBinaries(t *testing.T) {
	tests := []struct {
		name    string
		file    []byte
		wantErr bool
	}{
		{name: "text", file: []byte("#!/bin/sh\necho hi\n")},
		{name: "empty", file: nil},
		{name: "ELF magic alone", file: []byte("\x7fELF"), wantErr: true},
		{name: "ELF executable", file: elf(t), wantErr: true},
		{name: "magic not at the start", file: []byte(" \x7fELF"), wantErr: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := scratch(t)
			write(t, dir, "x.test", tt.file)
			mustGit(t, dir, "add", "x.test")
			for _, mode := range []string{"--staged", "tracked"} {
				if mode == "tracked" {
					mustGit(t, dir, "commit", "-q", "-m", "x") // no hook installed
				}
				cmd := exec.Command("bash", ".ci/check-binaries", mode)
				cmd.Dir = dir
				out, err := cmd.CombinedOutput()
				if (err != nil) != tt.wantErr {
					t.Fatalf("check-binaries %s: err %v, want an error %v\n%s", mode, err, tt.wantErr, out)
				}
				if tt.wantErr && !strings.Contains(string(out), "  x.test\n") {
					t.Errorf("check-binaries %s does not name the file:\n%s", mode, out)
				}
			}
		})
	}
}

// TestPreCommitHook installs the hook in a scratch repository and commits
// with it, as a developer would.
func TestPreCommitHook(t *testing.T) {
	dir := scratch(t)
	cmd := exec.Command("bash", ".ci/install-hooks")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install-hooks: %v\n%s", err, out)
	}
	write(t, dir, "notes.txt", []byte("fine\n"))
	mustGit(t, dir, "add", "notes.txt")
	mustGit(t, dir, "commit", "-q", "-m", "text is fine")

	write(t, dir, "holder.test", elf(t))
	mustGit(t, dir, "add", "holder.test")
	out, err := git(dir, "commit", "-q", "-m", "a binary")
	if err == nil {
		t.Fatalf("the hook let an ELF file be committed:\n%s", out)
	}
	if !strings.Contains(out, "ELF files must not be committed") || !strings.Contains(out, "  holder.test\n") {
		t.Errorf("the hook's message does not name the file:\n%s", out)
	}
	// Unstaged again, the commit goes through.
	mustGit(t, dir, "rm", "-q", "--cached", "holder.test")
	write(t, dir, "notes.txt", []byte("still fine\n"))
	mustGit(t, dir, "commit", "-q", "-am", "text again")
}
