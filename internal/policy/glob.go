package policy

import (
	"fmt"
	"strings"

	"github.com/fdholder/fdholder/internal/proto"
)

// Glob patterns over entry names.
//
//	*    any run of bytes, possibly empty, within one '/'-separated segment:
//	     "pub/*" matches "pub/a" but not "pub/a/b"
//	**   any run of bytes, '/' included: "pub/**" matches "pub/a/b",
//	     "**" matches every name
//	?    exactly one byte other than '/'
//
// Every other byte matches itself and must be one a name may contain
// (A-Z a-z 0-9 . _ @ / + -): a pattern that can never match a valid name
// is a mistake and refused when the policy is loaded. "***" is refused too.

// ValidatePattern returns an error if pat is not a valid glob pattern.
func ValidatePattern(pat string) error {
	if pat == "" {
		return fmt.Errorf("empty name pattern")
	}
	if len(pat) > 2*proto.MaxNameLen {
		return fmt.Errorf("name pattern %q is longer than %d bytes", pat, 2*proto.MaxNameLen)
	}
	if strings.Contains(pat, "***") {
		return fmt.Errorf("name pattern %q: \"***\" is meaningless; write ** or *", pat)
	}
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || c == '*' || c == '?' || c == '.' || c == '_' || c == '@' || c == '/' || c == '+' || c == '-' {
			continue
		}
		return fmt.Errorf("name pattern %q: %q cannot occur in a name (%s)", pat, c, proto.NameRule)
	}
	return nil
}

// Match reports whether name matches the glob pattern pat (see
// ValidatePattern for the syntax). It runs in O(len(pat)·len(name)) time
// whatever the pattern, with no backtracking blow-up.
func Match(pat, name string) bool {
	// ok[j]: pat[:i] matches name[:j], for the current i.
	var buf [2 * (proto.MaxNameLen + 2)]bool
	var ok, next []bool
	if len(name)+1 <= len(buf)/2 {
		ok, next = buf[:len(name)+1], buf[len(name)+1:2*(len(name)+1)]
	} else {
		ok, next = make([]bool, len(name)+1), make([]bool, len(name)+1)
	}
	ok[0] = true
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		star2 := c == '*' && i+1 < len(pat) && pat[i+1] == '*'
		switch {
		case star2:
			// ** : next[j] = any ok[k] for k <= j
			any := false
			for j := range ok {
				any = any || ok[j]
				next[j] = any
			}
			i++
		case c == '*':
			// * : next[j] = ok[k] for some k <= j with no '/' in name[k:j]
			any := false
			for j := range ok {
				if j > 0 && name[j-1] == '/' {
					any = false
				}
				any = any || ok[j]
				next[j] = any
			}
		default:
			next[0] = false
			for j := 1; j <= len(name); j++ {
				b := name[j-1]
				next[j] = ok[j-1] && (b == c || c == '?' && b != '/')
			}
		}
		ok, next = next, ok
	}
	return ok[len(name)]
}
