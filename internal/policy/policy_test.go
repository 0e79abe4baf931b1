package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/proto"
)

// fakeResolver knows a few users and groups, so that tests do not depend on
// the machine's passwd and group files.
type fakeResolver struct{}

var errUnknown = errors.New("unknown")

func (fakeResolver) LookupUser(name string) (uint32, error) {
	switch name {
	case "www-data":
		return 33, nil
	case "nobody":
		return 65534, nil
	}
	return 0, errUnknown
}

func (fakeResolver) LookupGroup(name string) (uint32, error) {
	switch name {
	case "web":
		return 4001, nil
	case "nogroup":
		return 65534, nil
	}
	return 0, errUnknown
}

const holderUID = 999

const example = `# fdholder policy
[[rule]]
uid = 65534            # or gid =, user = "www-data", group = "web"
ops = ["get", "list"]  # store, get, take, delete, list, transfer
names = ["pub/*"]      # glob patterns over names

[[rule]]
user = "www-data"
ops = [
  "store", "get",   # a comment inside an array
  "take", "delete", "list",
]
names = ["www/**", "w?b"]

	[[ rule ]]
group = "web"
ops = ["store", "delete", "get", "list", "transfer"]
names = ["team/*"]
any_owner = true

[[rule]]
gid = 4002
ops = ["list"]
names = ["**"]
any_owner = false
`

func parse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("p.toml", []byte(src), holderUID, fakeResolver{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseExample(t *testing.T) {
	p := parse(t, example)
	u := func(v uint32) *uint32 { return &v }
	want := []Rule{
		{Index: 1, File: "p.toml", Line: 2, Who: "uid 65534", UID: u(65534), Names: []string{"pub/*"}, ops: opBits["get"] | opBits["list"]},
		{Index: 2, File: "p.toml", Line: 7, Who: "user www-data (uid 33)", UID: u(33), Names: []string{"www/**", "w?b"},
			ops: opBits["store"] | opBits["get"] | opBits["take"] | opBits["delete"] | opBits["list"]},
		{Index: 3, File: "p.toml", Line: 15, Who: "group web (gid 4001)", GID: u(4001), Names: []string{"team/*"}, AnyOwner: true,
			ops: opBits["store"] | opBits["delete"] | opBits["get"] | opBits["list"] | opBits["transfer"]},
		{Index: 4, File: "p.toml", Line: 21, Who: "gid 4002", GID: u(4002), Names: []string{"**"}, ops: opBits["list"]},
	}
	got := p.Rules()
	if len(got) != len(want) {
		t.Fatalf("%d rules, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if fmt.Sprint(g.Index, g.File, g.Line, g.Who, g.Names, g.AnyOwner, g.ops) != fmt.Sprint(w.Index, w.File, w.Line, w.Who, w.Names, w.AnyOwner, w.ops) ||
			(g.UID == nil) != (w.UID == nil) || (g.GID == nil) != (w.GID == nil) ||
			g.UID != nil && *g.UID != *w.UID || g.GID != nil && *g.GID != *w.GID {
			t.Errorf("rule %d = %+v, want %+v", i+1, g, w)
		}
	}
	if ref := got[1].Ref(); ref != "rule 2 (p.toml:7)" {
		t.Errorf("Ref = %q", ref)
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		rules int
	}{
		{name: "empty file", src: "", rules: 0},
		{name: "comments only", src: "# nothing\n\n   # indented\n", rules: 0},
		{name: "CRLF line ends", src: "[[rule]]\r\nuid = 1\r\nops = [\"get\"]\r\nnames = [\"a\"]\r\n", rules: 1},
		{name: "no final newline", src: "[[rule]]\nuid = 1\nops = [\"get\"]\nnames = [\"a\"]", rules: 1},
		{name: "escapes in strings", src: "[[rule]]\nuser = \"www\\u002ddata\"\nops = [\"g\\u0065t\"]\nnames = [\"a\\\\\"]\n", rules: -1},
		{name: "plus sign", src: "[[rule]]\nuid = +7\nops = [\"get\"]\nnames = [\"a\"]\n", rules: 1},
		{name: "uid 0", src: "[[rule]]\nuid = 0\nops = [\"get\"]\nnames = [\"a\"]\n", rules: 1},
		{name: "comment after header", src: "[[rule]] # the first\nuid = 1\nops = [\"get\"]\nnames = [\"a\"]\n", rules: 1},
		// All of TOML 1.0 is accepted, as users write it.
		{name: "UTF-8 BOM", src: "\uFEFF[[rule]]\nuid = 1\nops = [\"get\"]\nnames = [\"a\"]\n", rules: 1},
		{name: "literal strings", src: "[[rule]]\nuser = 'www-data'\nops = ['get']\nnames = ['www/**']\n", rules: 1},
		{name: "multi-line strings", src: "[[rule]]\nuser = \"\"\"www-data\"\"\"\nops = ['''get''']\nnames = [\"\"\"\\\n  a\"\"\"]\n", rules: 1},
		{name: "hex integer", src: "[[rule]]\nuid = 0x21\nops = [\"get\"]\nnames = [\"a\"]\n", rules: 1},
		{name: "octal and binary integers", src: "[[rule]]\nuid = 0o41\nops = [\"get\"]\nnames = [\"a\"]\n[[rule]]\ngid = 0b100001\nops = [\"get\"]\nnames = [\"a\"]\n", rules: 2},
		{name: "underscore integer", src: "[[rule]]\nuid = 1_000\nops = [\"get\"]\nnames = [\"a\"]\n", rules: 1},
		{name: "quoted keys", src: "[[rule]]\n\"uid\" = 1\n'ops' = [\"get\"]\nnames = [\"a\"]\n", rules: 1},
		{name: "quoted table name", src: "[[ \"rule\" ]]\nuid = 1\nops = [\"get\"]\nnames = [\"a\"]\n", rules: 1},
		{name: "inline tables", src: "rule = [\n  {uid = 1, ops = [\"get\"], names = [\"a\"]},\n  {user = \"www-data\", ops = [\"list\"], names = [\"**\"], any_owner = true},\n]\n", rules: 2},
		{name: "trailing commas and comments in arrays", src: "[[rule]]\nuid = 1\nops = [\"get\",]\nnames = [\"a\",\n# c\n\"b\"]\n", rules: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.toml", []byte(tt.src), holderUID, fakeResolver{})
			if tt.rules < 0 {
				// "a\\" is not a valid pattern: the escape was decoded.
				if err == nil || !strings.Contains(err.Error(), `'\\' cannot occur in a name`) {
					t.Fatalf("Parse = %v, want the decoded backslash refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Rules()) != tt.rules {
				t.Errorf("%d rules, want %d", len(p.Rules()), tt.rules)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const ok = "ops = [\"get\"]\nnames = [\"a\"]\n"
	tests := []struct {
		name string
		src  string
		want string // the whole "policy FILE:LINE: ..." prefix and a part of the message
	}{
		{name: "key outside a rule", src: "uid = 1\n", want: `policy p.toml:1: key "uid" outside a [[rule]] table`},
		{name: "other table", src: "[[grant]]\n", want: "policy p.toml:1: unknown table [[grant]]"},
		{name: "plain table", src: "[rule]\n", want: "policy p.toml:1: [rule] is a single table; write [[rule]]"},
		{name: "sub-table", src: "[[rule]]\nuid = 1\n[rule.x]\n", want: "policy p.toml:3: unknown table [rule.x]"},
		{name: "rule not an array", src: "rule = 1\n", want: "policy p.toml:1: rule must be an array of tables, not an integer"},
		{name: "rule array of integers", src: "rule = [1]\n", want: "policy p.toml:1: rule must hold tables, not an integer"},
		{name: "inline rule incomplete", src: "rule = [\n  {uid = 1, ops = ['get'], names = ['a']},\n  {uid = 2},\n]\n", want: "policy p.toml:3: rule has no ops"},
		{name: "inline rule unknown key", src: "rule = [\n  {uid = 1,\n   allow = true},\n]\n", want: `policy p.toml:3: unknown key "allow"`},
		{name: "key case", src: "[[rule]]\nUID = 1\n", want: `policy p.toml:2: unknown key "UID"`},
		{name: "malformed header", src: "[[rule]\n", want: "policy p.toml:1: expected ']]'"},
		{name: "unknown key", src: "[[rule]]\nuid = 1\nallow = true\n", want: `policy p.toml:3: unknown key "allow"`},
		{name: "duplicate key", src: "[[rule]]\nuid = 1\n" + ok + "uid = 2\n", want: `policy p.toml:5: duplicate key "uid" (first set on line 2)`},
		{name: "wrong type uid", src: "[[rule]]\nuid = \"33\"\n", want: "policy p.toml:2: uid must be an integer, not a string"},
		{name: "wrong type ops", src: "[[rule]]\nuid = 1\nops = \"get\"\n", want: "policy p.toml:3: ops must be an array, not a string"},
		{name: "wrong type any_owner", src: "[[rule]]\nany_owner = 1\n", want: "policy p.toml:2: any_owner must be a boolean, not an integer"},
		{name: "ops of integers", src: "[[rule]]\nuid = 1\nops = [1]\n", want: "policy p.toml:3: ops must hold strings"},
		{name: "mixed array", src: "[[rule]]\nuid = 1\nops = [\"get\", 1]\n", want: "policy p.toml:3: ops must hold strings, not an integer"},
		{name: "mixed array on its own lines", src: "[[rule]]\nuid = 1\nops = [\n\"get\",\n1,\n]\n", want: "policy p.toml:5: ops must hold strings, not an integer"},
		{name: "unknown op", src: "[[rule]]\nuid = 1\nops = [\"read\"]\n", want: `policy p.toml:3: unknown op "read"`},
		{name: "op twice", src: "[[rule]]\nuid = 1\nops = [\"get\", \"get\"]\n", want: `policy p.toml:3: op "get" listed twice`},
		{name: "empty ops", src: "[[rule]]\nuid = 1\nops = []\n", want: "policy p.toml:3: ops is empty"},
		{name: "bad glob char", src: "[[rule]]\nuid = 1\nops = [\"get\"]\nnames = [\"a:b\"]\n", want: `policy p.toml:4: name pattern "a:b": ':' cannot occur`},
		{name: "bad glob bracket", src: "[[rule]]\nuid = 1\nops = [\"get\"]\nnames = [\n  \"ok\",\n  \"[ab]\",\n]\n", want: "policy p.toml:6: name pattern \"[ab]\""},
		{name: "triple star", src: "[[rule]]\nuid = 1\nops = [\"get\"]\nnames = [\"***\"]\n", want: "policy p.toml:4: name pattern \"***\""},
		{name: "empty glob", src: "[[rule]]\nuid = 1\nops = [\"get\"]\nnames = [\"\"]\n", want: "policy p.toml:4: empty name pattern"},
		{name: "unknown user", src: "[[rule]]\nuser = \"mallory\"\n", want: `policy p.toml:2: unknown user "mallory"`},
		{name: "unknown group", src: "[[rule]]\ngroup = \"admins\"\n", want: `policy p.toml:2: unknown group "admins"`},
		{name: "no selector", src: "[[rule]]\n" + ok, want: "policy p.toml:1: rule has no uid, gid, user or group"},
		{name: "two selectors", src: "[[rule]]\nuid = 1\ngid = 2\n" + ok, want: "policy p.toml:1: rule has more than one of uid, gid, user and group"},
		{name: "no ops", src: "[[rule]]\nuid = 1\nnames = [\"a\"]\n", want: "policy p.toml:1: rule has no ops"},
		{name: "no names", src: "[[rule]]\nuid = 1\nops = [\"get\"]\n", want: "policy p.toml:1: rule has no names"},
		{name: "second rule incomplete", src: "[[rule]]\nuid = 1\n" + ok + "[[rule]]\nuid = 2\n", want: "policy p.toml:5: rule has no ops"},
		{name: "negative uid", src: "[[rule]]\nuid = -1\n", want: "policy p.toml:2: uid -1 is out of range"},
		{name: "uid too large", src: "[[rule]]\nuid = 4294967295\n", want: "policy p.toml:2: uid 4294967295 is out of range"},
		{name: "integer overflow", src: "[[rule]]\nuid = 99999999999999999999\n", want: "policy p.toml:2: decimal number is too large"},
		{name: "leading zero", src: "[[rule]]\nuid = 033\n", want: "policy p.toml:2: integers cannot have leading zeroes"},
		{name: "float", src: "[[rule]]\nuid = 1.5\n", want: "policy p.toml:2: uid must be an integer, not a float"},
		{name: "date", src: "[[rule]]\nuid = 1979-05-27\n", want: "policy p.toml:2: uid must be an integer, not a date or time"},
		{name: "inline table", src: "[[rule]]\nuid = {a = 1}\n", want: "policy p.toml:2: uid must be an integer, not a table"},
		{name: "nested array", src: "[[rule]]\nuid = 1\nops = [[\"get\"]]\n", want: "policy p.toml:3: ops must hold strings, not an array"},
		{name: "dotted key", src: "[[rule]]\nrule.uid = 1\n", want: `policy p.toml:2: unknown key "rule.uid"`},
		{name: "duplicate quoted key", src: "[[rule]]\nuid = 1\n\"uid\" = 2\n", want: `policy p.toml:3: duplicate key "uid" (first set on line 2)`},
		{name: "missing equals", src: "[[rule]]\nuid 1\n", want: "policy p.toml:2: expected '=' after key"},
		{name: "missing value", src: "[[rule]]\nuid =\n", want: "policy p.toml:2: unexpected character U+000A at start of value"},
		{name: "two values on a line", src: "[[rule]]\nuid = 1 gid = 2\n", want: "policy p.toml:2: expected newline but got U+0067 'g'"},
		{name: "unterminated string", src: "[[rule]]\nuser = \"www\n", want: "policy p.toml:2: basic strings cannot have new lines"},
		{name: "bad escape", src: "[[rule]]\nuser = \"a\\qb\"\n", want: "policy p.toml:2: invalid escape character U+0071 'q'"},
		{name: "surrogate escape", src: "[[rule]]\nuser = \"\\ud800\"\n", want: "policy p.toml:2: escape sequence is not a valid unicode code point"},
		{name: "control char in string", src: "[[rule]]\nuser = \"a\x01\"\n", want: "policy p.toml:2: basic strings cannot have control characters"},
		{name: "control char in comment", src: "[[rule]]\n# a\x01\n", want: "policy p.toml:2: control characters are not allowed in comments"},
		{name: "invalid UTF-8", src: "[[rule]]\nuser = \"\xff\"\n", want: "policy p.toml:2: invalid UTF-8"},
		{name: "unterminated array", src: "[[rule]]\nuid = 1\nops = [\"get\",\n", want: "policy p.toml:3: array is incomplete"},
		{name: "array without comma", src: "[[rule]]\nuid = 1\nops = [\"get\" \"list\"]\n", want: "policy p.toml:3: expected ',' or ']'"},
		{name: "bare word", src: "[[rule]]\nuid = yes\n", want: "policy p.toml:2: unexpected character U+0079 'y' at start of value"},
		{name: "garbage line", src: "\n\n!!\n", want: "policy p.toml:3: invalid character at start of key: U+0021 '!'"},
		{name: "lone CR", src: "[[rule]]\ruid = 1\n", want: "policy p.toml:1: expected newline but got U+000D"},
		{name: "BOM not at the start", src: "[[rule]]\n\uFEFFuid = 1\n", want: "policy p.toml:2: invalid character at start of key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.toml", []byte(tt.src), holderUID, fakeResolver{})
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.src)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("error %v is a %T, not a *SyntaxError", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("[[rule]]\nuser = \"nobody\"\nops = [\"get\"]\nnames = [\"**\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[[rule]]\nuser = \"no-such-user-here\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, make([]byte, maxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{name: "system resolver", path: good},
		{name: "unknown user names the line", path: bad, wantErr: "policy " + bad + `:2: unknown user "no-such-user-here"`},
		{name: "missing file", path: filepath.Join(dir, "none.toml"), wantErr: "no such file"},
		{name: "too large", path: big, wantErr: "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Load(tt.path, holderUID)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r := p.Rules(); len(r) != 1 || r[0].UID == nil || *r[0].UID != 65534 {
				t.Errorf("rules %+v, want one for uid 65534 (nobody)", r)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pat, name string
		want      bool
	}{
		{"web", "web", true},
		{"web", "web2", false},
		{"web", "we", false},
		{"pub/*", "pub/a", true},
		{"pub/*", "pub/", true},
		{"pub/*", "pub/a/b", false},
		{"pub/*", "pub", false},
		{"pub/**", "pub/a/b", true},
		{"pub/**", "pub/", true},
		{"pub/**", "pubx", false},
		{"**", "anything/at/all", true},
		{"*", "a/b", false},
		{"*", "abc", true},
		{"a*c", "abbbc", true},
		{"a*c", "ab/c", false},
		{"a**c", "ab/c", true},
		{"w?b", "web", true},
		{"w?b", "w/b", false},
		{"w?b", "wb", false},
		{"*.sock", "api.sock", true},
		{"*/*", "a/b", true},
		{"*/*", "a/b/c", false},
		{"**/x", "a/b/x", true},
		{"**/x", "x", false},
		{"a*b*c*d", "aXbYcZd", true},
		{"a*b*c*d", "aXbYcZ", false},
	}
	for _, tt := range tests {
		t.Run(tt.pat+" "+tt.name, func(t *testing.T) {
			if err := ValidatePattern(tt.pat); err != nil {
				t.Fatal(err)
			}
			if got := Match(tt.pat, tt.name); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.pat, tt.name, got, tt.want)
			}
			if got := refMatch(tt.pat, tt.name); got != tt.want {
				t.Errorf("the reference matcher says %v", got)
			}
		})
	}
}

// refMatch is Match by way of a regular expression, to check Match against.
func refMatch(pat, name string) bool {
	var re strings.Builder
	re.WriteString("(?s)^")
	for i := 0; i < len(pat); i++ {
		switch {
		case strings.HasPrefix(pat[i:], "**"):
			re.WriteString(".*")
			i++
		case pat[i] == '*':
			re.WriteString("[^/]*")
		case pat[i] == '?':
			re.WriteString("[^/]")
		default:
			re.WriteString(regexp.QuoteMeta(pat[i : i+1]))
		}
	}
	re.WriteString("$")
	return regexp.MustCompile(re.String()).MatchString(name)
}

func TestCheck(t *testing.T) {
	p := parse(t, example)
	peer := func(uid, gid uint32, groups ...uint32) *holder.Peer {
		return &holder.Peer{UID: uid, GID: gid, PID: 1, Groups: groups}
	}
	owner := func(uid uint32) *holder.Owner { return &holder.Owner{UID: uid} }
	nobody := peer(65534, 65534)
	www := peer(33, 33)
	member := peer(5000, 5000, 100, 4001)   // web by a supplementary group
	primary := peer(5001, 4001)             // web as its primary group
	lister := peer(5002, 5002, 4002)        // may list, but get nothing
	stranger := peer(5003, 5003, 100, 4003) // no rule for it
	tests := []struct {
		name   string
		peer   *holder.Peer
		op     string
		entry  string
		owner  *holder.Owner
		want   bool
		rule   string // what decided, a substring
		notOwn bool
	}{
		{name: "root", peer: peer(0, 0), op: "delete", entry: "x", owner: owner(7), want: true, rule: "root"},
		{name: "holder uid", peer: peer(holderUID, 1), op: "take", entry: "x", owner: owner(7), want: true, rule: "holder uid"},
		{name: "nobody get pub", peer: nobody, op: "get", entry: "pub/a", want: true, rule: "rule 1 (p.toml:2)"},
		{name: "nobody get pub of another", peer: nobody, op: "get", entry: "pub/a", owner: owner(0), want: true, rule: "rule 1"},
		{name: "nobody get deeper", peer: nobody, op: "get", entry: "pub/a/b", rule: `default: no rule grants get on "pub/a/b" to uid 65534`},
		{name: "nobody list", peer: nobody, op: "list", want: true, rule: "rule 1"},
		{name: "nobody take pub", peer: nobody, op: "take", entry: "pub/a", rule: "default: no rule grants take"},
		{name: "nobody store", peer: nobody, op: "store", entry: "pub/a", rule: "default"},
		{name: "www store new", peer: www, op: "store", entry: "www/a/b", want: true, rule: "rule 2 (p.toml:7)"},
		{name: "www replace own", peer: www, op: "store", entry: "www/a", owner: owner(33), want: true, rule: "rule 2"},
		{name: "www replace root's", peer: www, op: "store", entry: "www/a", owner: owner(0), notOwn: true,
			rule: "rule 2 (p.toml:7): grants store on entries uid 33 stored; this one is uid 0's (any_owner is not set)"},
		{name: "www delete root's", peer: www, op: "delete", entry: "www/a", owner: owner(0), notOwn: true, rule: "rule 2"},
		{name: "www take own", peer: www, op: "take", entry: "www/a", owner: owner(33), want: true, rule: "rule 2"},
		{name: "www take root's", peer: www, op: "take", entry: "www/a", owner: owner(0), notOwn: true, rule: "rule 2"},
		{name: "www get root's", peer: www, op: "get", entry: "www/a", owner: owner(0), want: true, rule: "rule 2"},
		{name: "www question mark", peer: www, op: "get", entry: "web", want: true, rule: "rule 2"},
		{name: "www transfer not granted", peer: www, op: "transfer", entry: "www/a", rule: "default: no rule grants transfer"},
		{name: "www other name", peer: www, op: "get", entry: "pub/a", rule: "default"},
		{name: "member delete any owner", peer: member, op: "delete", entry: "team/x", owner: owner(0), want: true, rule: "rule 3 (p.toml:15)"},
		{name: "member transfer", peer: member, op: "transfer", entry: "team/x", owner: owner(0), want: true, rule: "rule 3"},
		{name: "member take not granted", peer: member, op: "take", entry: "team/x", owner: owner(5000), rule: "default"},
		{name: "primary group", peer: primary, op: "store", entry: "team/y", owner: owner(0), want: true, rule: "rule 3"},
		{name: "lister list", peer: lister, op: "list", want: true, rule: "rule 4 (p.toml:21)"},
		{name: "lister list entry", peer: lister, op: "list", entry: "a/b", owner: owner(0), want: true, rule: "rule 4"},
		{name: "lister get", peer: lister, op: "get", entry: "a/b", rule: "default"},
		{name: "stranger list", peer: stranger, op: "list", rule: "default: no rule grants list to uid 5003"},
		{name: "stranger get", peer: stranger, op: "get", entry: "pub/a", rule: "default"},
		{name: "unknown op", peer: member, op: "op(9)", entry: "team/x", rule: "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Check(tt.peer, tt.op, tt.entry, tt.owner)
			if d.Allowed != tt.want || d.NotOwner != tt.notOwn || !strings.Contains(d.Rule, tt.rule) {
				t.Errorf("Check(uid %d, %s, %q, %v) = %+v, want allowed %v, not owner %v, rule containing %q",
					tt.peer.UID, tt.op, tt.entry, tt.owner, d, tt.want, tt.notOwn, tt.rule)
			}
		})
	}
}

func TestAllowUsesOpNames(t *testing.T) {
	p := parse(t, example)
	nobody := &holder.Peer{UID: 65534, GID: 65534}
	for _, tt := range []struct {
		op   proto.Op
		want bool
	}{{proto.OpGet, true}, {proto.OpList, true}, {proto.OpStore, false}, {proto.OpTake, false}, {proto.OpDelete, false}} {
		if d := p.Allow(holder.AccessRequest{Peer: nobody, Op: tt.op, Name: "pub/a"}); d.Allowed != tt.want {
			t.Errorf("Allow(%s) = %+v, want allowed %v", tt.op, d, tt.want)
		}
	}
}

func TestDefault(t *testing.T) {
	p := Default(holderUID)
	for _, tt := range []struct {
		uid  uint32
		want bool
	}{{0, true}, {holderUID, true}, {1000, false}, {65534, false}} {
		d := p.Check(&holder.Peer{UID: tt.uid}, "list", "", nil)
		if d.Allowed != tt.want {
			t.Errorf("uid %d: %+v, want allowed %v", tt.uid, d, tt.want)
		}
	}
}

func TestListPrefixes(t *testing.T) {
	p := parse(t, `
[[rule]]
uid = 33
ops = ["list", "get"]
names = ["www/**", "pub/a?", "exact"]

[[rule]]
uid = 33
ops = ["get"]
names = ["other/*"]

[[rule]]
uid = 44
ops = ["list"]
names = ["**"]
`)
	tests := []struct {
		name     string
		peer     holder.Peer
		want     string
		wantsAll bool
	}{
		{name: "the list rules' literal beginnings", peer: holder.Peer{UID: 33, GID: 33}, want: "www/ pub/a exact"},
		{name: "a pattern that starts with a wildcard", peer: holder.Peer{UID: 44, GID: 44}, wantsAll: true},
		{name: "no list rule", peer: holder.Peer{UID: 55, GID: 55}},
		{name: "root", peer: holder.Peer{}, wantsAll: true},
		{name: "the holder's uid", peer: holder.Peer{UID: holderUID, GID: 1}, wantsAll: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, all := p.ListPrefixes(&tt.peer)
			if strings.Join(got, " ") != tt.want || all != tt.wantsAll {
				t.Errorf("ListPrefixes = %q, %v; want %q, %v", got, all, tt.want, tt.wantsAll)
			}
		})
	}
}

// TestParseTOML checks the values and places of rules written with the
// TOML that the old subset refused: an inline array of tables, literal
// strings, integers in other bases.
func TestParseTOML(t *testing.T) {
	p := parse(t, "\uFEFF# rules\nrule = [\n  {uid = 0x21, ops = ['get'], names = ['www/**']},\n\n  {group = 'web', ops = [\"list\"], names = [\"**\"], any_owner = true},\n]\n")
	got := p.Rules()
	if len(got) != 2 {
		t.Fatalf("%d rules, want 2: %+v", len(got), got)
	}
	if r := got[0]; r.Ref() != "rule 1 (p.toml:3)" || r.Who != "uid 33" || *r.UID != 33 || !r.Grants("get") || r.Grants("list") || fmt.Sprint(r.Names) != "[www/**]" || r.AnyOwner {
		t.Errorf("rule 1 = %+v (%s)", r, r.Ref())
	}
	if r := got[1]; r.Ref() != "rule 2 (p.toml:5)" || r.Who != "group web (gid 4001)" || *r.GID != 4001 || !r.Grants("list") || !r.AnyOwner {
		t.Errorf("rule 2 = %+v (%s)", r, r.Ref())
	}
}

// anyResolver resolves every name, for the examples of the docs.
type anyResolver struct{}

func (anyResolver) LookupUser(string) (uint32, error)  { return 1000, nil }
func (anyResolver) LookupGroup(string) (uint32, error) { return 1000, nil }

// TestDocExamples parses every TOML block of the README and
// docs/security.md, so that the policies the docs show are ones that load.
func TestDocExamples(t *testing.T) {
	for _, doc := range []string{"../../README.md", "../../docs/security.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllSubmatch(data, -1)
		if len(blocks) == 0 {
			t.Fatalf("%s: no toml block", doc)
		}
		for i, b := range blocks {
			t.Run(fmt.Sprintf("%s block %d", filepath.Base(doc), i+1), func(t *testing.T) {
				p, err := Parse(doc, b[1], holderUID, anyResolver{})
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Rules()) == 0 {
					t.Error("no rules")
				}
			})
		}
	}
}
