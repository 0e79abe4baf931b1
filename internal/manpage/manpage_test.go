package manpage

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/policy"
	"github.com/fdholder/fdholder/internal/testutil"
)

// TestBody checks how each kind of help text line becomes roff.
func TestBody(t *testing.T) {
	tests := []struct {
		name string
		help string
		want []string // in the roff, in this order
	}{
		{
			name: "heading and flags",
			help: "Intro text\nsecond line.\n\nOptions:\n  --socket PATH   the socket\n                  to create\n  -h, --help      help\n",
			want: []string{".SH DESCRIPTION\n.PP\nIntro text\nsecond line.\n", ".SH OPTIONS\n", ".TP\n\\fB\\-\\-socket\\fR \\fIPATH\\fR\nthe socket\nto create\n", ".TP\n\\fB\\-h,\\fR \\fB\\-\\-help\\fR\nhelp\n"},
		},
		{
			name: "command with nested flags and an example",
			help: "Commands:\n  listen NAME\n      Bind it, as in:\n        tcp:127.0.0.1:80  unix:/run/a\n      More text.\n      --replace   swap it in\n\n  help\n      Print this.\n",
			want: []string{".SH COMMANDS\n", ".TP\n\\fBlisten\\fR \\fINAME\\fR\nBind it, as in:\n.RS\n.nf\ntcp:127.0.0.1:80  unix:/run/a\n.fi\n.RE\n.IP\nMore text.\n.RS\n.TP\n\\fB\\-\\-replace\\fR\nswap it in\n.RE\n", ".TP\n\\fBhelp\\fR\nPrint this.\n"},
		},
		{
			name: "a tag and its description one space apart",
			help: "Commands:\n  list\n      --names print the names\n              only\n",
			want: []string{".TP\n\\fB\\-\\-names\\fR\nprint the names\nonly\n"},
		},
		{
			name: "a flag wrapped to the start of a line is text",
			help: "Commands:\n  store NAME\n      It prints nothing.\n      --replace is as for listen.\n",
			want: []string{"It prints nothing.\n\\-\\-replace is as for listen.\n"},
		},
		{
			name: "numbered steps and a heading with a comma",
			help: "Socket path, the first that applies:\n  1. systemd\n     activation\n  2. --socket PATH\n",
			want: []string{".SH SOCKET PATH\n.PP\nThe first that applies:\n", ".TP\n1.\nsystemd\nactivation\n", ".TP\n2.\n\\-\\-socket PATH\n"},
		},
		{
			name: "escapes",
			help: "Text with a \\ backslash\n.starts with a dot\n",
			want: []string{"Text with a \\e backslash\n\\&.starts with a dot\n"},
		},
		{
			name: "examples stay as they are",
			help: "Examples:\n  prog a  # comment\n  prog b\n",
			want: []string{".SH EXAMPLES\n.RS\n.nf\nprog a  # comment\nprog b\n.fi\n.RE\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Body(tt.help)
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("roff lacks (in order) %q; got:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestSynopsis(t *testing.T) {
	tests := []struct {
		name, help, want string
	}{
		{"on the heading line", "Usage: prog [--a]\n            [--b]\n       prog --help\n\nText.\n", ".nf\nprog [\\-\\-a]\n     [\\-\\-b]\nprog \\-\\-help\n.fi\n"},
		{"under the heading", "Intro.\n\nUsage:\n  prog X\n  prog --help\n\nMore.\n", ".nf\nprog X\nprog \\-\\-help\n.fi\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Synopsis(tt.help); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// generated builds both programs and generates the three pages from
// deploy/man, as "make man" does. It returns the pages' directory and the
// programs' directory.
func generated(t testing.TB) (pages, bin string) {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := testutil.ShortDir(t)
	bin = filepath.Join(dir, "bin")
	testutil.BuildShipped(t, bin, "fdholderd", "fdclient")
	templates, err := filepath.Glob(filepath.Join(root, "deploy", "man", "*.in"))
	if err != nil || len(templates) != 3 {
		t.Fatalf("templates %v, %v: want 3", templates, err)
	}
	pages = filepath.Join(dir, "man")
	if err := Generate(templates, bin, pages, "test", "2026-01-01"); err != nil {
		t.Fatal(err)
	}
	return pages, bin
}

// plain undoes the roff escapes the generator writes, for searching.
func plain(roff string) string {
	return strings.NewReplacer(`\-`, "-", `\fB`, "", `\fI`, "", `\fR`, "", `\e`, `\`, `\&`, "").Replace(roff)
}

// wordRun is a run of words separated by single spaces.
var wordRun = regexp.MustCompile(`\S+(?: \S+)*`)

// readerText is the text of a page as roff, with the requests (.TP, .SH
// ...) dropped, the escapes undone and white space collapsed, between
// spaces.
func readerText(roff string) string {
	var words []string
	for _, l := range strings.Split(roff, "\n") {
		if strings.HasPrefix(l, ".") {
			continue
		}
		words = append(words, strings.Fields(plain(l))...)
	}
	return " " + strings.Join(words, " ") + " "
}

// TestPagesCoverHelp checks that every flag, every heading and every line
// the programs' --help prints is in their man page: the pages are generated from it, and
// this catches a help text the generator would drop.
func TestPagesCoverHelp(t *testing.T) {
	pages, bin := generated(t)
	for _, tt := range []struct{ name, page string }{
		{"fdholderd", "fdholderd.8"},
		{"fdclient", "fdclient.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			help, err := exec.Command(filepath.Join(bin, tt.name), "--help").Output()
			if err != nil {
				t.Fatal(err)
			}
			roff, err := os.ReadFile(filepath.Join(pages, tt.page))
			if err != nil {
				t.Fatal(err)
			}
			text := plain(string(roff))
			flags := Flags(string(help))
			if len(flags) < 5 {
				t.Fatalf("found only %v in the help text", flags)
			}
			for _, f := range flags {
				if !regexp.MustCompile(`(^|[^a-z-])` + regexp.QuoteMeta(f) + `($|[^a-z0-9-])`).MatchString(text) {
					t.Errorf("%s: flag %s of --help is not in the page", tt.page, f)
				}
			}
			// Every run of words of the help text (runs are split at two
			// spaces, where a flag ends and its description starts) is in
			// the page's text: nothing is dropped or reworded.
			page := readerText(string(roff))
			for _, s := range splitSections(string(help)) {
				for _, l := range s.lines {
					for _, run := range wordRun.FindAllString(l, -1) {
						if !strings.Contains(page, " "+run+" ") {
							t.Errorf("%s: %q of the --help line %q is not in the page", tt.page, run, l)
						}
					}
				}
			}
			for _, s := range splitSections(string(help)) {
				if s.title == "" || s.title == "Usage" {
					continue
				}
				title, _, _ := strings.Cut(s.title, ", ")
				if !strings.Contains(string(roff), "\n.SH "+strings.ToUpper(title)+"\n") {
					t.Errorf("%s: section %q of --help is not a section of the page", tt.page, s.title)
				}
			}
		})
	}
}

// TestPagesRender renders each page with man(1) as a user would read it,
// 80 columns wide, with groff's warnings on: there must be none.
func TestPagesRender(t *testing.T) {
	_, err := exec.LookPath("man")
	testutil.NeedPeer(t, err == nil, "man (Debian package man-db): %v", err)
	pages, _ := generated(t)
	for _, page := range []string{"fdholderd.8", "fdclient.1", "fdholder-policy.5"} {
		t.Run(page, func(t *testing.T) {
			cmd := exec.Command("man", "--warnings", "-l", filepath.Join(pages, page))
			cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil || stderr.Len() > 0 {
				t.Fatalf("man: %v\n%s", err, stderr.String())
			}
			if !strings.Contains(stdout.String(), "SEE ALSO") || stdout.Len() < 1000 {
				t.Errorf("rendered page is short or lacks SEE ALSO:\n%s", stdout.String())
			}
		})
	}
}

// nopResolver resolves every user and group to 1000, for parsing the
// example policy without the system's databases.
type nopResolver struct{}

func (nopResolver) LookupUser(string) (uint32, error)  { return 1000, nil }
func (nopResolver) LookupGroup(string) (uint32, error) { return 1000, nil }

// TestPolicyPage checks fdholder-policy(5) against the parser: every key
// and every op the parser's errors list is in the page, and the example
// policy the page includes (and the package installs) parses, as shipped
// with no rule, and with its example rules uncommented.
func TestPolicyPage(t *testing.T) {
	pages, _ := generated(t)
	roff, err := os.ReadFile(filepath.Join(pages, "fdholder-policy.5"))
	if err != nil {
		t.Fatal(err)
	}
	text := plain(string(roff))
	listed := func(policyText, after string) []string {
		t.Helper()
		_, err := policy.Parse("p", []byte(policyText), 0, nopResolver{})
		if err == nil || !strings.Contains(err.Error(), after) {
			t.Fatalf("parse %q: %v, want an error with %q", policyText, err, after)
		}
		list := strings.SplitN(err.Error(), after, 2)[1]
		return strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '"' })
	}
	keys := listed("[[rule]]\nnope = 1\n", "a rule has ")
	ops := listed("[[rule]]\nuid = 1\nops = [\"nope\"]\nnames = [\"a\"]\n", "ops are ")
	for _, list := range [][]string{keys, ops} {
		for _, w := range list {
			if w == "and" {
				continue
			}
			if !strings.Contains(text, "\n.BI "+w+" ") && !strings.Contains(text, w+",") && !strings.Contains(text, w+" and") {
				t.Errorf("the parser knows %q; fdholder-policy(5) does not say it", w)
			}
		}
	}

	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, "deploy", "fdholder", "policy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "[[rule]]") || !strings.Contains(text, `user = "www-data"`) {
		t.Errorf("the page does not include the example policy")
	}
	p, err := policy.Parse("policy.toml", example, 0, nopResolver{})
	if err != nil || len(p.Rules()) != 0 {
		t.Fatalf("the example as shipped: %v, %v; want no rule", p, err)
	}
	uncommented := regexp.MustCompile(`(?m)^# ((?:\[\[rule\]\]|[a-z_]+ = ).*)$`).ReplaceAll(example, []byte("$1"))
	p, err = policy.Parse("policy.toml", uncommented, 0, nopResolver{})
	if err != nil || len(p.Rules()) != 3 {
		t.Fatalf("the example with its rules uncommented: %v; want 3 rules\n%s", err, uncommented)
	}
}

// TestFlags checks which words of a help text are read as its flags.
func TestFlags(t *testing.T) {
	tests := []struct {
		name string
		help string
		want []string
	}{
		{"flags in a synopsis", "  exec [--wait DUR] [--rebind] NAME\n  list [--json | --names]\n", []string{"--wait", "--rebind", "--json", "--names"}},
		{"each once", "--socket PATH\n  also --socket and -h\n", []string{"--socket", "-h"}},
		{"no flag inside a word", "get-or-create, re-bind\n", nil},
		{"another program's flags after --", "  fdclient exec --vars nginx web -- nginx -c /etc/app/nginx.conf\n", []string{"--vars"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Flags(tt.help); !slices.Equal(got, tt.want) {
				t.Errorf("Flags(%q) = %q, want %q", tt.help, got, tt.want)
			}
		})
	}
}
