package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// ruleTable is one [[rule]] table as TOML decodes it. A nil pointer or
// slice is a key the table does not set.
type ruleTable struct {
	UID      *int64   `toml:"uid"`
	GID      *int64   `toml:"gid"`
	User     *string  `toml:"user"`
	Group    *string  `toml:"group"`
	Ops      []string `toml:"ops"`
	Names    []string `toml:"names"`
	AnyOwner bool     `toml:"any_owner"`
}

// policyFile is a whole policy file: an array of rule tables, written as
// [[rule]] headers or as rule = [{...}, ...].
type policyFile struct {
	Rule []ruleTable `toml:"rule"`
}

// ruleSpan is where a rule and its keys are in the file, for the errors
// the rules' meaning finds after decoding (an unknown user, a bad pattern).
type ruleSpan struct {
	line  int            // the [[rule]] header, or the '{' of an inline table
	keys  map[string]int // key -> its line
	items map[string][]int
}

// keyKinds is the schema of a rule: each key and the TOML kind of its
// value (for ops and names, of each element of the array).
var keyKinds = map[string]unstable.Kind{
	"uid":       unstable.Integer,
	"gid":       unstable.Integer,
	"user":      unstable.String,
	"group":     unstable.String,
	"ops":       unstable.String,
	"names":     unstable.String,
	"any_owner": unstable.Bool,
}

const keyList = "uid, gid, user, group, ops, names and any_owner"

// utf8BOM is accepted at the start of a file: editors on some systems
// write one, and TOML 1.0 does not forbid it.
var utf8BOM = []byte("\uFEFF")

// decodeFile decodes a policy file with go-toml (all of TOML 1.0), checks it
// against the schema (no unknown key, no wrong type), and returns its rule
// tables with where each is. Every error is a *SyntaxError.
func decodeFile(file string, data []byte) ([]ruleTable, []ruleSpan, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	// The schema check walks the document's syntax tree first: its nodes know
	// their place in the file, and its errors can name the key and the line.
	spans, err := walkFile(file, data)
	if err != nil {
		return nil, nil, err
	}
	// The decoder then reads the values (escapes, integers in any base) and
	// refuses, as a second line of defence, what the schema would not hold.
	var pf policyFile
	err = toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&pf)
	if err != nil {
		return nil, nil, decodeError(file, err)
	}
	if len(pf.Rule) != len(spans) {
		return nil, nil, &SyntaxError{File: file, Line: 1, Msg: fmt.Sprintf("%d rules decoded where the file has %d", len(pf.Rule), len(spans))}
	}
	return pf.Rule, spans, nil
}

// decodeError turns an error of go-toml's decoder into a *SyntaxError with
// the line go-toml reports.
func decodeError(file string, err error) error {
	se := &SyntaxError{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &strict) && len(strict.Errors) > 0:
		se.Line, _ = strict.Errors[0].Position()
		se.Msg = fmt.Sprintf("unknown key %q", strings.Join(strict.Errors[0].Key(), "."))
	case errors.As(err, &de):
		se.Line, _ = de.Position()
	}
	return se
}

// walker checks a document's syntax tree against the schema.
type walker struct {
	file  string
	data  []byte
	spans []ruleSpan
}

func (w *walker) errorf(line int, format string, args ...any) error {
	return &SyntaxError{File: w.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// line returns the line of a node that has a place in the input.
func (w *walker) line(r unstable.Range) int {
	return bytes.Count(w.data[:r.Offset], []byte("\n")) + 1
}

func walkFile(file string, data []byte) ([]ruleSpan, error) {
	w := &walker{file: file, data: data}
	var p unstable.Parser
	p.Reset(data)
	inRule := false // the last table header was [[rule]]
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			key, line := w.key(e)
			inRule = e.Kind == unstable.ArrayTable && key == "rule"
			switch {
			case inRule:
				w.spans = append(w.spans, ruleSpan{line: line, keys: map[string]int{}, items: map[string][]int{}})
			case key == "rule":
				return nil, w.errorf(line, "[rule] is a single table; write [[rule]] for each rule")
			case e.Kind == unstable.ArrayTable:
				return nil, w.errorf(line, "unknown table [[%s]]; the policy file holds only [[rule]] tables", key)
			default:
				return nil, w.errorf(line, "unknown table [%s]; the policy file holds only [[rule]] tables", key)
			}
		case unstable.KeyValue:
			if inRule {
				if err := w.keyValue(&w.spans[len(w.spans)-1], e); err != nil {
					return nil, err
				}
				continue
			}
			if err := w.topKeyValue(e); err != nil {
				return nil, err
			}
		}
	}
	if err := p.Error(); err != nil {
		line := 1
		var pe *unstable.ParserError
		if errors.As(err, &pe) {
			// The highlight is a slice of data: its capacity tells where.
			if off := cap(data) - cap(pe.Highlight); pe.Highlight != nil && off >= 0 && off <= len(data) {
				line = w.line(unstable.Range{Offset: uint32(off)})
			}
			err = errors.New(pe.Message)
		}
		return nil, w.errorf(line, "%v", err)
	}
	return w.spans, nil
}

// key returns a table header's or a key-value's key, dotted, and its line.
func (w *walker) key(n *unstable.Node) (string, int) {
	var parts []string
	line := 0
	for it := n.Key(); it.Next(); {
		k := it.Node()
		if line == 0 {
			line = w.line(k.Raw)
		}
		parts = append(parts, string(k.Data))
	}
	return strings.Join(parts, "."), line
}

// topKeyValue checks a key outside any table: only rule = [{...}, ...].
func (w *walker) topKeyValue(e *unstable.Node) error {
	key, line := w.key(e)
	if key != "rule" {
		return w.errorf(line, "key %q outside a [[rule]] table; the policy file holds only [[rule]] tables", key)
	}
	v := e.Value()
	if v.Kind != unstable.Array {
		return w.errorf(line, "rule must be an array of tables, not %s", kindName(v.Kind))
	}
	for it := v.Children(); it.Next(); {
		t := it.Node()
		if t.Kind != unstable.InlineTable {
			return w.errorf(w.line(e.Raw), "rule must hold tables, not %s", kindName(t.Kind))
		}
		w.spans = append(w.spans, ruleSpan{line: w.line(t.Raw), keys: map[string]int{}, items: map[string][]int{}})
		for kv := t.Children(); kv.Next(); {
			if err := w.keyValue(&w.spans[len(w.spans)-1], kv.Node()); err != nil {
				return err
			}
		}
	}
	return nil
}

// keyValue checks one key of a rule and notes where it and its elements are.
func (w *walker) keyValue(s *ruleSpan, e *unstable.Node) error {
	key, line := w.key(e)
	want, ok := keyKinds[key]
	if !ok {
		return w.errorf(line, "unknown key %q; a rule has %s", key, keyList)
	}
	if prev, ok := s.keys[key]; ok {
		return w.errorf(line, "duplicate key %q (first set on line %d)", key, prev)
	}
	s.keys[key] = line
	v := e.Value()
	if key != "ops" && key != "names" {
		if v.Kind != want {
			return w.errorf(line, "%s must be %s, not %s", key, kindName(want), kindName(v.Kind))
		}
		return nil
	}
	if v.Kind != unstable.Array {
		return w.errorf(line, "%s must be %s, not %s", key, kindName(unstable.Array), kindName(v.Kind))
	}
	for it := v.Children(); it.Next(); {
		item := it.Node()
		at := line
		if item.Raw.Length > 0 {
			at = w.line(item.Raw)
		}
		if item.Kind != want {
			return w.errorf(at, "%s must hold strings, not %s", key, kindName(item.Kind))
		}
		s.items[key] = append(s.items[key], at)
	}
	return nil
}

// kindName names a TOML value kind with its article, as errors say it.
func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable:
		return "a table"
	case unstable.Float:
		return "a float"
	default:
		return "a date or time"
	}
}
