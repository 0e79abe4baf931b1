package policy

import (
	"fmt"
	"io"
	"math"
	"os"
	"os/user"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Resolver turns user and group names into ids when a policy is loaded.
// Names are resolved once, at load time: a user renumbered later needs a
// reload (SIGHUP).
type Resolver interface {
	LookupUser(name string) (uid uint32, err error)
	LookupGroup(name string) (gid uint32, err error)
}

// SystemResolver resolves names with os/user (the system's passwd and group
// databases).
type SystemResolver struct{}

// LookupUser returns the uid of the user name.
func (SystemResolver) LookupUser(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has uid %q: %w", name, u.Uid, err)
	}
	return uint32(id), nil
}

// LookupGroup returns the gid of the group name.
func (SystemResolver) LookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %q has gid %q: %w", name, g.Gid, err)
	}
	return uint32(id), nil
}

// maxFileSize bounds a policy file: a real one is a few hundred bytes.
const maxFileSize = 1 << 20

// Load reads and parses the policy file at path, resolving user and group
// names with SystemResolver. holderUID is the uid the holder runs as, which
// like root may always do everything.
func Load(path string, holderUID uint32) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("policy %s: larger than %d bytes", path, maxFileSize)
	}
	return Parse(path, data, holderUID, SystemResolver{})
}

// SyntaxError is a policy file that cannot be used: the file, the line and
// what is wrong there.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("policy %s:%d: %s", e.File, e.Line, e.Msg)
}

// Parse parses a policy file's contents. file names it in errors and in
// the rule references of decisions. Every error is a *SyntaxError.
func Parse(file string, data []byte, holderUID uint32, res Resolver) (*Policy, error) {
	p := &parser{file: file, src: data, line: 1, res: res}
	rules, err := p.parse()
	if err != nil {
		return nil, err
	}
	return &Policy{file: file, rules: rules, holderUID: holderUID}, nil
}

// parser reads the TOML subset of docs/security.md. It works on bytes with
// a cursor and a line counter; it never recurses deeper than one array.
type parser struct {
	file string
	src  []byte
	pos  int
	line int
	res  Resolver
}

// value is one parsed value.
type value struct {
	kind  string // "string", "integer", "boolean", "array"
	str   string
	num   int64
	boo   bool
	items []value
	line  int
}

func (p *parser) errorf(line int, format string, args ...any) error {
	return &SyntaxError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) peek() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func (p *parser) eof() bool { return p.pos >= len(p.src) }

// skipSpace skips blanks (space and tab) on the current line.
func (p *parser) skipSpace() {
	for !p.eof() && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

// skipComment skips a comment to the end of the line (not the newline).
// Comments may hold any UTF-8 text but no control characters other than tab.
func (p *parser) skipComment() error {
	if p.peek() != '#' {
		return nil
	}
	for !p.eof() && p.src[p.pos] != '\n' && p.src[p.pos] != '\r' {
		r, size := utf8.DecodeRune(p.src[p.pos:])
		if r == utf8.RuneError && size <= 1 {
			return p.errorf(p.line, "invalid UTF-8 in a comment")
		}
		if r < 0x20 && r != '\t' || r == 0x7f {
			return p.errorf(p.line, "control character %U in a comment", r)
		}
		p.pos += size
	}
	return nil
}

// endLine expects the end of a line: blanks, an optional comment, then a
// newline (LF or CRLF) or the end of the file.
func (p *parser) endLine() error {
	p.skipSpace()
	if err := p.skipComment(); err != nil {
		return err
	}
	return p.newline()
}

func (p *parser) newline() error {
	switch {
	case p.eof():
		return nil
	case p.src[p.pos] == '\n':
		p.pos++
	case p.src[p.pos] == '\r' && p.pos+1 < len(p.src) && p.src[p.pos+1] == '\n':
		p.pos += 2
	default:
		return p.errorf(p.line, "unexpected %s after the value; one key = value per line", describeByte(p.src, p.pos))
	}
	p.line++
	return nil
}

func describeByte(b []byte, i int) string {
	r, _ := utf8.DecodeRune(b[i:])
	if r == utf8.RuneError || r < 0x20 || r == 0x7f {
		return fmt.Sprintf("byte 0x%02x", b[i])
	}
	return strconv.QuoteRune(r)
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func (p *parser) parse() ([]Rule, error) {
	var rules []Rule
	var cur *ruleBuilder
	finish := func() error {
		if cur == nil {
			return nil
		}
		r, err := cur.build(p)
		if err != nil {
			return err
		}
		r.Index = len(rules) + 1
		rules = append(rules, r)
		return nil
	}
	for !p.eof() {
		p.skipSpace()
		switch c := p.peek(); {
		case c == '#' || c == '\n' || c == '\r' || c == 0 && p.eof():
			if err := p.endLine(); err != nil {
				return nil, err
			}
		case c == '[':
			if err := p.tableHeader(); err != nil {
				return nil, err
			}
			if err := finish(); err != nil {
				return nil, err
			}
			cur = &ruleBuilder{line: p.line, seen: map[string]int{}}
			if err := p.endLine(); err != nil {
				return nil, err
			}
		case isBare(c):
			line := p.line
			key := p.bareKey()
			p.skipSpace()
			if p.peek() == '.' {
				return nil, p.errorf(line, "dotted keys are not supported")
			}
			if p.peek() != '=' {
				return nil, p.errorf(line, "expected '=' after key %q", key)
			}
			p.pos++
			p.skipSpace()
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			if cur == nil {
				return nil, p.errorf(line, "key %q outside a [[rule]] table; the policy file holds only [[rule]] tables", key)
			}
			if err := cur.set(p, key, v, line); err != nil {
				return nil, err
			}
			if err := p.endLine(); err != nil {
				return nil, err
			}
		case c == '"' || c == '\'':
			return nil, p.errorf(p.line, "quoted keys are not supported")
		default:
			return nil, p.errorf(p.line, "unexpected %s at the start of a line", describeByte(p.src, p.pos))
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return rules, nil
}

func (p *parser) bareKey() string {
	start := p.pos
	for !p.eof() && isBare(p.src[p.pos]) {
		p.pos++
	}
	return string(p.src[start:p.pos])
}

// tableHeader reads "[[rule]]", the only table the policy has.
func (p *parser) tableHeader() error {
	line := p.line
	if p.pos+1 >= len(p.src) || p.src[p.pos+1] != '[' {
		return p.errorf(line, "tables other than [[rule]] are not supported")
	}
	p.pos += 2
	p.skipSpace()
	name := p.bareKey()
	p.skipSpace()
	if p.pos+1 >= len(p.src) || p.src[p.pos] != ']' || p.src[p.pos+1] != ']' {
		return p.errorf(line, "malformed table header; write [[rule]]")
	}
	p.pos += 2
	if name != "rule" {
		return p.errorf(line, "unknown table [[%s]]; the policy file holds only [[rule]] tables", name)
	}
	return nil
}

// value reads a basic string, an integer, a boolean or an array of them.
func (p *parser) value() (value, error) {
	return p.valueDepth(0)
}

func (p *parser) valueDepth(depth int) (value, error) {
	line := p.line
	switch c := p.peek(); {
	case c == '"':
		if p.pos+2 < len(p.src) && p.src[p.pos+1] == '"' && p.src[p.pos+2] == '"' {
			return value{}, p.errorf(line, "multi-line strings are not supported")
		}
		s, err := p.basicString()
		return value{kind: "string", str: s, line: line}, err
	case c == '\'':
		return value{}, p.errorf(line, "literal strings ('...') are not supported; use \"...\"")
	case c == '[':
		if depth > 0 {
			return value{}, p.errorf(line, "nested arrays are not supported")
		}
		return p.array()
	case c == '{':
		return value{}, p.errorf(line, "inline tables are not supported")
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		w := p.bareKey()
		switch w {
		case "true":
			return value{kind: "boolean", boo: true, line: line}, nil
		case "false":
			return value{kind: "boolean", boo: false, line: line}, nil
		}
		return value{}, p.errorf(line, "invalid value %q", w)
	case c == '+' || c == '-' || c >= '0' && c <= '9':
		return p.integer()
	case p.eof() || c == '\n' || c == '\r' || c == '#':
		return value{}, p.errorf(line, "missing value after '='")
	default:
		return value{}, p.errorf(line, "invalid value starting with %s", describeByte(p.src, p.pos))
	}
}

func (p *parser) integer() (value, error) {
	line := p.line
	start := p.pos
	if c := p.peek(); c == '+' || c == '-' {
		p.pos++
	}
	digits := p.pos
	for !p.eof() && (isBare(p.src[p.pos]) || p.src[p.pos] == '.') {
		p.pos++
	}
	text := string(p.src[start:p.pos])
	d := p.src[digits:p.pos]
	if len(d) == 0 {
		return value{}, p.errorf(line, "invalid integer %q", text)
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return value{}, p.errorf(line, "invalid integer %q: only decimal digits are supported", text)
		}
	}
	if len(d) > 1 && d[0] == '0' {
		return value{}, p.errorf(line, "invalid integer %q: leading zeros are not allowed", text)
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return value{}, p.errorf(line, "integer %s is out of range", text)
	}
	return value{kind: "integer", num: n, line: line}, nil
}

// basicString reads a TOML basic string: "...", with the escapes \b \t \n
// \f \r \" \\ \uXXXX \UXXXXXXXX. It may not span lines.
func (p *parser) basicString() (string, error) {
	line := p.line
	p.pos++ // the opening quote
	var b strings.Builder
	for {
		if p.eof() {
			return "", p.errorf(line, "unterminated string")
		}
		c := p.src[p.pos]
		switch {
		case c == '"':
			p.pos++
			return b.String(), nil
		case c == '\n' || c == '\r':
			return "", p.errorf(line, "unterminated string (strings may not span lines)")
		case c == '\\':
			if p.pos+1 >= len(p.src) {
				return "", p.errorf(line, "unterminated string")
			}
			e := p.src[p.pos+1]
			p.pos += 2
			switch e {
			case 'b':
				b.WriteByte('\b')
			case 't':
				b.WriteByte('\t')
			case 'n':
				b.WriteByte('\n')
			case 'f':
				b.WriteByte('\f')
			case 'r':
				b.WriteByte('\r')
			case '"':
				b.WriteByte('"')
			case '\\':
				b.WriteByte('\\')
			case 'u', 'U':
				n := 4
				if e == 'U' {
					n = 8
				}
				if p.pos+n > len(p.src) {
					return "", p.errorf(line, "truncated \\%c escape", e)
				}
				code, err := strconv.ParseUint(string(p.src[p.pos:p.pos+n]), 16, 32)
				if err != nil || code > utf8.MaxRune || code >= 0xD800 && code <= 0xDFFF {
					return "", p.errorf(line, "invalid escape \\%c%s", e, p.src[p.pos:p.pos+n])
				}
				p.pos += n
				b.WriteRune(rune(code))
			default:
				return "", p.errorf(line, "invalid escape %s in a string", strconv.Quote("\\"+string(rune(e))))
			}
		default:
			r, size := utf8.DecodeRune(p.src[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", p.errorf(line, "invalid UTF-8 in a string")
			}
			if r < 0x20 && r != '\t' || r == 0x7f {
				return "", p.errorf(line, "control character %U in a string; escape it", r)
			}
			b.WriteRune(r)
			p.pos += size
		}
	}
}

// array reads [v, v, ...]. Arrays may span lines, with comments between
// elements, and may end with a comma; all elements must be of one type.
func (p *parser) array() (value, error) {
	line := p.line
	p.pos++ // '['
	v := value{kind: "array", line: line}
	for {
		if err := p.skipArraySpace(); err != nil {
			return value{}, err
		}
		if p.eof() {
			return value{}, p.errorf(line, "unterminated array")
		}
		if p.peek() == ']' {
			p.pos++
			return v, nil
		}
		item, err := p.valueDepth(1)
		if err != nil {
			return value{}, err
		}
		if len(v.items) > 0 && v.items[0].kind != item.kind {
			return value{}, p.errorf(item.line, "mixed types in an array: %s and %s", v.items[0].kind, item.kind)
		}
		v.items = append(v.items, item)
		if len(v.items) > maxArrayLen {
			return value{}, p.errorf(line, "more than %d elements in an array", maxArrayLen)
		}
		if err := p.skipArraySpace(); err != nil {
			return value{}, err
		}
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return v, nil
		default:
			if p.eof() {
				return value{}, p.errorf(line, "unterminated array")
			}
			return value{}, p.errorf(p.line, "expected ',' or ']' in an array, found %s", describeByte(p.src, p.pos))
		}
	}
}

// maxArrayLen bounds ops and names lists.
const maxArrayLen = 4096

// skipArraySpace skips blanks, comments and newlines inside an array.
func (p *parser) skipArraySpace() error {
	for {
		p.skipSpace()
		switch p.peek() {
		case '#':
			if err := p.skipComment(); err != nil {
				return err
			}
		case '\n', '\r':
			if err := p.newline(); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// ruleBuilder collects the keys of one [[rule]] table.
type ruleBuilder struct {
	line int
	seen map[string]int // key -> line
	r    Rule
	sel  int // how many of uid, gid, user, group were given
	ops  bool
	nm   bool
}

func (b *ruleBuilder) set(p *parser, key string, v value, line int) error {
	if prev, ok := b.seen[key]; ok {
		return p.errorf(line, "duplicate key %q (first set on line %d)", key, prev)
	}
	b.seen[key] = line
	want := func(kind string) error {
		if v.kind != kind {
			return p.errorf(line, "%s must be %s %s, not %s %s", key, article(kind), kind, article(v.kind), v.kind)
		}
		return nil
	}
	switch key {
	case "uid", "gid":
		if err := want("integer"); err != nil {
			return err
		}
		if v.num < 0 || v.num > math.MaxUint32-1 {
			return p.errorf(line, "%s %d is out of range (0 to %d)", key, v.num, uint32(math.MaxUint32-1))
		}
		id := uint32(v.num)
		if key == "uid" {
			b.r.UID, b.r.Who = &id, fmt.Sprintf("uid %d", id)
		} else {
			b.r.GID, b.r.Who = &id, fmt.Sprintf("gid %d", id)
		}
		b.sel++
	case "user", "group":
		if err := want("string"); err != nil {
			return err
		}
		if v.str == "" {
			return p.errorf(line, "%s is empty", key)
		}
		if key == "user" {
			id, err := p.res.LookupUser(v.str)
			if err != nil {
				return p.errorf(line, "unknown user %q: %v", v.str, err)
			}
			b.r.UID, b.r.Who = &id, fmt.Sprintf("user %s (uid %d)", v.str, id)
		} else {
			id, err := p.res.LookupGroup(v.str)
			if err != nil {
				return p.errorf(line, "unknown group %q: %v", v.str, err)
			}
			b.r.GID, b.r.Who = &id, fmt.Sprintf("group %s (gid %d)", v.str, id)
		}
		b.sel++
	case "ops":
		if err := want("array"); err != nil {
			return err
		}
		if len(v.items) == 0 {
			return p.errorf(line, "ops is empty")
		}
		for _, it := range v.items {
			if it.kind != "string" {
				return p.errorf(it.line, "ops must hold strings, not %s", it.kind)
			}
			bit, ok := opBits[it.str]
			if !ok {
				return p.errorf(it.line, "unknown op %q; ops are %s", it.str, opList)
			}
			if b.r.ops&bit != 0 {
				return p.errorf(it.line, "op %q listed twice", it.str)
			}
			b.r.ops |= bit
		}
		b.ops = true
	case "names":
		if err := want("array"); err != nil {
			return err
		}
		if len(v.items) == 0 {
			return p.errorf(line, "names is empty")
		}
		for _, it := range v.items {
			if it.kind != "string" {
				return p.errorf(it.line, "names must hold strings, not %s", it.kind)
			}
			if err := ValidatePattern(it.str); err != nil {
				return p.errorf(it.line, "%v", err)
			}
			b.r.Names = append(b.r.Names, it.str)
		}
		b.nm = true
	case "any_owner":
		if err := want("boolean"); err != nil {
			return err
		}
		b.r.AnyOwner = v.boo
	default:
		return p.errorf(line, "unknown key %q; a rule has uid, gid, user, group, ops, names and any_owner", key)
	}
	return nil
}

func article(kind string) string {
	if kind == "integer" || kind == "array" {
		return "an"
	}
	return "a"
}

func (b *ruleBuilder) build(p *parser) (Rule, error) {
	switch {
	case b.sel == 0:
		return Rule{}, p.errorf(b.line, "rule has no uid, gid, user or group: say whom it grants to")
	case b.sel > 1:
		return Rule{}, p.errorf(b.line, "rule has more than one of uid, gid, user and group; write one rule per peer")
	case !b.ops:
		return Rule{}, p.errorf(b.line, "rule has no ops")
	case !b.nm:
		return Rule{}, p.errorf(b.line, "rule has no names (use [\"**\"] for every name)")
	}
	b.r.File, b.r.Line = p.file, b.line
	return b.r, nil
}
