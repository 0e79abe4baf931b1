package policy

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/proto"
)

// FuzzParse checks that decoding a policy never panics, that every error
// is a *SyntaxError on a line of the input, and that every policy it
// accepts is complete. Run with:
// go test ./internal/policy -run '^$' -fuzz FuzzParse -fuzztime 60s
func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("[[rule]]\nuid = 1\nops = [\"get\"]\nnames = [\"a\"]\n"))
	f.Add([]byte("[[rule]]\r\ngroup = \"web\"\r\nops = [\r\n\"list\", # c\r\n]\r\nnames = [\"**\"]\r\nany_owner = true\r\n"))
	f.Add([]byte("[[rule]]\nuser = \"\\u0041\\U0001F600\"\n"))
	f.Add([]byte("[rule]\n"))
	f.Add([]byte("[[rule]]\nuid = 99999999999999999999999\n"))
	f.Add([]byte("\uFEFFrule = [{uid = 0x21, ops = ['get'], names = ['''a/*''']}]\n"))
	f.Add([]byte("[[rule]]\nuser = \"\"\"www\\\n  -data\"\"\"\nops = [\"get\",]\nnames = [\"**\"]\n[rule.x]\n"))
	// From the corpus fuzzing generated for the old parser: the fewest
	// inputs that reach every block the whole corpus reached beyond the
	// seeds above (each input run alone with -coverprofile).
	for _, s := range []string{
		"뜀",
		"[[rule]]\nops=0",
		"[[rule]]\nnames=[\"\"]",
		"[[rule]]\nuser=0",
		"0=\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t0",
		"[[000]]",
		"[[rule]]\n0=0",
		"#\n[[rule]]    ",
		"[[rule]]\nuid=-1",
		"[[rule]]\nuid=10",
		"[[rule]]\nnames=[]",
		"[[rule]]\nuser=\"\"",
		"[[rule]]\nuid=0\nuid=0",
		"[[rule]]\nuid=0\nuser=\"www-data\"",
		"[[rule]]\nuid=0\nops=[\"list\"]\nnames=[\"A\"]\n[[rule]]\nops=[\"\"]",
		"#\n[[rule]]\nuid=10000          #00000000000000000000\nops=[\"get\",\"list\"]  #00000000000000000000000000000000000000000\nnames=[\"aa/a[0000\"]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse("f.toml", src, holderUID, fakeResolver{})
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is a %T, not a *SyntaxError", err, err)
			}
			lines := bytes.Count(src, []byte("\n")) + 1
			if se.Line < 1 || se.Line > lines {
				t.Fatalf("error on line %d of a %d-line input: %v", se.Line, lines, err)
			}
			return
		}
		for _, r := range p.Rules() {
			if r.ops == 0 || len(r.Names) == 0 || (r.UID == nil) == (r.GID == nil) {
				t.Fatalf("incomplete rule accepted: %+v", r)
			}
			for _, pat := range r.Names {
				if ValidatePattern(pat) != nil {
					t.Fatalf("invalid pattern %q accepted", pat)
				}
			}
		}
	})
}

// FuzzMatch checks Match against a regular expression built from the same
// pattern.
func FuzzMatch(f *testing.F) {
	f.Add("pub/*", "pub/a")
	f.Add("**/x", "a/b/x")
	f.Add("a*b?c**", "aXXb/c/d")
	// From the generated corpus, chosen as for FuzzParse. testdata/fuzz
	// keeps the two inputs that found bugs in refMatch when this test was
	// written (commit 35f7d99): a multi-byte rune against '?' (Match works
	// on bytes, names are ASCII) and a newline against '**' (hence (?s)).
	for _, s := range [][2]string{
		{"", "0"},
		{"𧻰", "0"},
		{"***", "0"},
		{strings.Repeat("0", 638), "0"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, name string) {
		// Only valid names: Match works on bytes, the regexp on runes,
		// and names are ASCII.
		if ValidatePattern(pat) != nil || proto.ValidateName(name) != nil {
			return
		}
		if got, want := Match(pat, name), refMatch(pat, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, the reference says %v", pat, name, got, want)
		}
	})
}
