package policy

import (
	"fmt"
	"io"
	"math"
	"os"
	"os/user"
	"strconv"
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

// maxArrayLen bounds ops and names lists.
const maxArrayLen = 4096

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

// Parse parses a policy file's contents: TOML 1.0 (a UTF-8 byte order mark
// is allowed) holding [[rule]] tables. file names it in errors and in the
// rule references of decisions. Every error is a *SyntaxError.
//
// A file without rules is valid and grants nothing beyond root and
// holderUID; a caller can tell by len(p.Rules()) == 0 and warn.
func Parse(file string, data []byte, holderUID uint32, res Resolver) (*Policy, error) {
	tables, spans, err := decodeFile(file, data)
	if err != nil {
		return nil, err
	}
	rules := make([]Rule, 0, len(tables))
	for i := range tables {
		r, err := buildRule(file, &tables[i], &spans[i], res)
		if err != nil {
			return nil, err
		}
		r.Index = i + 1
		rules = append(rules, r)
	}
	return &Policy{file: file, rules: rules, holderUID: holderUID}, nil
}

// buildRule gives a decoded rule table its meaning: whom it selects
// (resolving names), which ops it grants, and on which name patterns.
func buildRule(file string, t *ruleTable, s *ruleSpan, res Resolver) (Rule, error) {
	errorf := func(line int, format string, args ...any) error {
		return &SyntaxError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	r := Rule{File: file, Line: s.line, AnyOwner: t.AnyOwner}
	selectors := 0
	for _, id := range []struct {
		key string
		v   *int64
		dst **uint32
	}{{"uid", t.UID, &r.UID}, {"gid", t.GID, &r.GID}} {
		if id.v == nil {
			continue
		}
		if *id.v < 0 || *id.v > math.MaxUint32-1 {
			return Rule{}, errorf(s.keys[id.key], "%s %d is out of range (0 to %d)", id.key, *id.v, uint32(math.MaxUint32-1))
		}
		n := uint32(*id.v)
		*id.dst, r.Who = &n, fmt.Sprintf("%s %d", id.key, n)
		selectors++
	}
	for _, nm := range []struct {
		key    string
		v      *string
		lookup func(string) (uint32, error)
		dst    **uint32
		id     string
	}{{"user", t.User, res.LookupUser, &r.UID, "uid"}, {"group", t.Group, res.LookupGroup, &r.GID, "gid"}} {
		if nm.v == nil {
			continue
		}
		line := s.keys[nm.key]
		if *nm.v == "" {
			return Rule{}, errorf(line, "%s is empty", nm.key)
		}
		n, err := nm.lookup(*nm.v)
		if err != nil {
			return Rule{}, errorf(line, "unknown %s %q: %v", nm.key, *nm.v, err)
		}
		*nm.dst, r.Who = &n, fmt.Sprintf("%s %s (%s %d)", nm.key, *nm.v, nm.id, n)
		selectors++
	}
	for _, list := range []struct {
		key string
		v   []string
	}{{"ops", t.Ops}, {"names", t.Names}} {
		line, ok := s.keys[list.key]
		switch {
		case !ok:
			continue
		case len(list.v) == 0:
			return Rule{}, errorf(line, "%s is empty", list.key)
		case len(list.v) > maxArrayLen:
			return Rule{}, errorf(line, "more than %d elements in %s", maxArrayLen, list.key)
		}
		for i, v := range list.v {
			at := line
			if i < len(s.items[list.key]) {
				at = s.items[list.key][i]
			}
			if list.key == "names" {
				if err := ValidatePattern(v); err != nil {
					return Rule{}, errorf(at, "%v", err)
				}
				r.Names = append(r.Names, v)
				continue
			}
			bit, ok := opBits[v]
			if !ok {
				return Rule{}, errorf(at, "unknown op %q; ops are %s", v, opList)
			}
			if r.ops&bit != 0 {
				return Rule{}, errorf(at, "op %q listed twice", v)
			}
			r.ops |= bit
		}
	}
	switch {
	case selectors == 0:
		return Rule{}, errorf(s.line, "rule has no uid, gid, user or group: say whom it grants to")
	case selectors > 1:
		return Rule{}, errorf(s.line, "rule has more than one of uid, gid, user and group; write one rule per peer")
	case r.ops == 0:
		return Rule{}, errorf(s.line, "rule has no ops")
	case len(r.Names) == 0:
		return Rule{}, errorf(s.line, "rule has no names (use [\"**\"] for every name)")
	}
	return r, nil
}
