package install

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/manpage"
	"github.com/fdholder/fdholder/internal/testutil"
)

// buildPrograms builds fdholderd and fdclient into a new directory.
func buildPrograms(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(testutil.ShortDir(t), "bin")
	testutil.BuildShipped(t, bin, "fdholderd", "fdclient")
	return bin
}

func readCompletion(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "deploy", "completion", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCompletionsCoverHelp checks that every flag and command the programs'
// --help prints is offered by each shell's completion.
func TestCompletionsCoverHelp(t *testing.T) {
	t.Parallel()
	bin := buildPrograms(t)
	scripts := map[string][]string{
		"fdclient":  {"fdclient.bash", "_fdclient", "fdclient.fish"},
		"fdholderd": {"fdholderd.bash", "_fdholderd", "fdholderd.fish"},
	}
	for prog, files := range scripts {
		help, err := exec.Command(filepath.Join(bin, prog), "--help").Output()
		if err != nil {
			t.Fatal(err)
		}
		flags := manpage.Flags(string(help))
		var commands []string
		if _, cmds, ok := strings.Cut(string(help), "\nCommands:\n"); ok {
			cmds, _, _ = strings.Cut(cmds, "\n\n\n")
			for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+)(?: |$)`).FindAllStringSubmatch(cmds, -1) {
				commands = append(commands, m[1])
			}
		}
		if len(flags) < 4 || prog == "fdclient" && len(commands) < 6 {
			t.Fatalf("%s --help: found only flags %v and commands %v", prog, flags, commands)
		}
		for _, file := range files {
			t.Run(file, func(t *testing.T) {
				script := readCompletion(t, file)
				for _, f := range flags {
					re := `(^|[^a-z-])` + regexp.QuoteMeta(f) + `($|[^a-z0-9-])`
					if strings.HasSuffix(file, ".fish") {
						re = `-l ` + regexp.QuoteMeta(strings.TrimPrefix(f, "--")) + `\b`
						if !strings.HasPrefix(f, "--") {
							re = `-s ` + regexp.QuoteMeta(strings.TrimPrefix(f, "-")) + `\b`
						}
					}
					if !regexp.MustCompile(re).MatchString(script) {
						t.Errorf("%s does not complete %s (in %s --help)", file, f, prog)
					}
				}
				for _, c := range commands {
					if !regexp.MustCompile(`\b` + c + `\b`).MatchString(script) {
						t.Errorf("%s does not complete the command %s", file, c)
					}
				}
			})
		}
	}
}

// holder starts fdholderd on a socket of its own, stores listeners under
// names, and returns the socket's path. It is stopped (SIGTERM, by its
// pid) at the end of the test.
func holder(t testing.TB, bin string, names ...string) string {
	t.Helper()
	sock := filepath.Join(testutil.ShortDir(t), "h.sock")
	cmd := exec.Command(filepath.Join(bin, "fdholderd"), "--socket", sock, "--log-level", "warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	for _, name := range names {
		// --wait is not for listen: retry the first store until the
		// holder answers (exit 6 while its socket does not exist yet).
		for i := 0; ; i++ {
			out, err := exec.Command(filepath.Join(bin, "fdclient"), "--socket", sock, "listen", name, "tcp:127.0.0.1:0").CombinedOutput()
			if err == nil {
				break
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 6 || i > 500 {
				t.Fatalf("fdclient listen %s: %v\n%s", name, err, out)
			}
			if cmd.ProcessState != nil {
				t.Fatalf("fdholderd exited: %v", cmd.ProcessState)
			}
			waitForPath(sock)
		}
	}
	return sock
}

// waitForPath returns once path exists, or after a while: the caller
// retries and decides.
func waitForPath(path string) {
	for range 100 {
		if _, err := os.Stat(path); err == nil {
			return
		}
		exec.Command("sleep", "0.01").Run()
	}
}

// completionCase is a command line being completed: the words, the last
// one the word under the cursor.
type completionCase struct {
	name  string
	words []string
	want  []string // exactly these, in any order; nil: see contains
	has   []string // at least these
}

var completionCases = []completionCase{
	{name: "commands", words: []string{"fdclient", ""}, want: []string{"listen", "store", "adopt", "exec", "list", "delete", "transfer", "help"}},
	{name: "command prefix", words: []string{"fdclient", "de"}, want: []string{"delete"}},
	{name: "global flags", words: []string{"fdclient", "--"}, want: []string{"--socket", "--timeout", "--version", "--help"}},
	{name: "list flags", words: []string{"fdclient", "list", "--"}, want: []string{"--json", "--names", "--watch", "--interval"}},
	{name: "transfer flags", words: []string{"fdclient", "transfer", "--"}, want: []string{"--names", "--replace", "--to"}},
	{name: "adopt flags", words: []string{"fdclient", "adopt", "--"}, want: []string{"--pid", "--fd", "--replace", "--ttl", "--dry-run"}},
	{name: "adopt names after --pid", words: []string{"fdclient", "adopt", "--pid", "1", ""}, want: []string{"web", "api/v1", "admin"}},
	{name: "held names", words: []string{"fdclient", "delete", ""}, want: []string{"web", "api/v1", "admin"}},
	{name: "held names by prefix", words: []string{"fdclient", "delete", "a"}, want: []string{"api/v1", "admin"}},
	{name: "exec names after a flag", words: []string{"fdclient", "--timeout", "5s", "exec", "--wait", "1s", "web", ""}, want: []string{"web", "api/v1", "admin"}},
	{name: "names from the --socket given", words: []string{"fdclient", "--socket", "/nonexistent/x.sock", "delete", ""}, want: []string{}},
	{name: "no name for an address", words: []string{"fdclient", "listen", "web", ""}, want: []string{}},
	{name: "program after exec --", words: []string{"fdclient", "exec", "web", "--", "bas"}, has: []string{"bash"}},
}

func checkCompletion(t testing.TB, tc completionCase, got []string) {
	t.Helper()
	if tc.want != nil {
		if !sameSet(got, tc.want) {
			t.Errorf("%q completes to %q, want %q", tc.words, got, tc.want)
		}
		return
	}
	for _, h := range tc.has {
		if !slices.Contains(got, h) {
			t.Errorf("%q completes to %q, want among them %q", tc.words, got, h)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestBashCompletion loads the completion the way an interactive bash with
// bash-completion does (its loader finds completions/fdclient by the
// command's name), checks "complete -p", and completes command lines
// against a running holder, in a real "bash -i".
func TestBashCompletion(t *testing.T) {
	t.Parallel()
	needTools(t, "bash")
	const loader = "/usr/share/bash-completion/bash_completion"
	_, err := os.Stat(loader)
	testutil.NeedPeer(t, err == nil, "bash-completion (Debian package bash-completion): %v", err)
	bin := buildPrograms(t)
	sock := holder(t, bin, "web", "api/v1", "admin")

	// BASH_COMPLETION_USER_DIR/completions is where bash-completion looks
	// first; the package installs the same file in
	// /usr/share/bash-completion/completions.
	userDir := testutil.ShortDir(t)
	if err := os.MkdirAll(filepath.Join(userDir, "completions"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(userDir, "completions", "fdclient"), []byte(readCompletion(t, "fdclient.bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	fmt.Fprintf(&script, "source %s\n_completion_loader fdclient\necho \"== complete\"\ncomplete -p fdclient\n", loader)
	for _, tc := range completionCases {
		words := make([]string, len(tc.words))
		for i, w := range tc.words {
			words[i] = fmt.Sprintf("%q", w)
		}
		fmt.Fprintf(&script, "echo \"== %s\"\nCOMP_WORDS=(%s); COMP_CWORD=%d; COMPREPLY=()\n_fdclient\nprintf '%%s\\n' \"${COMPREPLY[@]}\"\n",
			tc.name, strings.Join(words, " "), len(tc.words)-1)
	}
	cmd := exec.Command("bash", "--norc", "--noprofile", "-i", "-c", script.String())
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FDHOLDER_SOCKET="+sock,
		"BASH_COMPLETION_USER_DIR="+userDir, "HOME="+userDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bash: %v\n%s", err, stderr.String())
	}
	out := parseSections(stdout.String())
	if got := strings.TrimSpace(strings.Join(out["complete"], "\n")); got != "complete -F _fdclient fdclient" {
		t.Errorf("complete -p fdclient: %q, want \"complete -F _fdclient fdclient\"\nstderr: %s", got, stderr.String())
	}
	for _, tc := range completionCases {
		t.Run(tc.name, func(t *testing.T) {
			checkCompletion(t, tc, out[tc.name])
		})
	}
}

// TestFishCompletion completes the same command lines in fish ("complete
// -C" asks fish what it would offer).
func TestFishCompletion(t *testing.T) {
	t.Parallel()
	needTools(t, "fish")
	bin := buildPrograms(t)
	sock := holder(t, bin, "web", "api/v1", "admin")
	file := filepath.Join(moduleRoot(t), "deploy", "completion", "fdclient.fish")
	var script strings.Builder
	fmt.Fprintf(&script, "source %s\n", file)
	for _, tc := range completionCases {
		if tc.name == "program after exec --" {
			continue // fish's completion does not complete PROG
		}
		line := strings.Join(tc.words, " ")
		fmt.Fprintf(&script, "echo '== %s'\ncomplete -C '%s' | string replace -r '\\t.*' ''\n", tc.name, line)
	}
	script.WriteString("true\n") // string replace fails when it replaced nothing
	cmd := exec.Command("fish", "--no-config", "-c", script.String())
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FDHOLDER_SOCKET="+sock, "HOME="+testutil.ShortDir(t))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fish: %v\n%s", err, stderr.String())
	}
	out := parseSections(stdout.String())
	for _, tc := range completionCases {
		if tc.name == "program after exec --" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			checkCompletion(t, tc, out[tc.name])
		})
	}
}

// TestZshCompletion checks that zsh parses both completion functions, and
// completes the command lines in a real interactive zsh (in a
// pseudo-terminal, testdata/capture.zsh) with compinit and _fdclient found
// through fpath, as the package installs it.
func TestZshCompletion(t *testing.T) {
	t.Parallel()
	needTools(t, "zsh")
	dir := filepath.Join(moduleRoot(t), "deploy", "completion")
	for _, f := range []string{"_fdclient", "_fdholderd"} {
		if out, err := exec.Command("zsh", "-n", filepath.Join(dir, f)).CombinedOutput(); err != nil {
			t.Errorf("zsh -n %s: %v\n%s", f, err, out)
		}
	}
	bin := buildPrograms(t)
	sock := holder(t, bin, "web", "api/v1", "admin")
	capture := filepath.Join(moduleRoot(t), "test", "install", "testdata", "capture.zsh")
	home := testutil.ShortDir(t)
	for _, tc := range completionCases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("zsh", "-f", capture, dir, strings.Join(tc.words, " "))
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FDHOLDER_SOCKET="+sock, "HOME="+home)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("zsh: %v\n%s", err, out)
			}
			got := []string{}
			for _, m := range regexp.MustCompile(`<<(.*)>>`).FindAllStringSubmatch(string(out), -1) {
				got = append(got, m[1])
			}
			checkCompletion(t, tc, got)
		})
	}
}

// parseSections splits output into the lines after each "== NAME" line.
func parseSections(out string) map[string][]string {
	m := map[string][]string{}
	var cur string
	for _, l := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(l, "== "); ok {
			cur = name
			m[cur] = []string{}
			continue
		}
		if l != "" && cur != "" {
			m[cur] = append(m[cur], l)
		}
	}
	return m
}
