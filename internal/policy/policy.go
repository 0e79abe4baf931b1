package policy

import (
	"fmt"
	"strings"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/proto"
)

// Op names as the policy file writes them. "transfer" is accepted for the
// transfer operation; Check decides it like take (the entry leaves its
// owner's hands), so a rule must say any_owner to transfer others' entries.
var opBits = map[string]uint8{
	"store":    1 << 0,
	"get":      1 << 1,
	"take":     1 << 2,
	"delete":   1 << 3,
	"list":     1 << 4,
	"transfer": 1 << 5,
}

const opList = "store, get, take, delete, list and transfer"

// ownerOps are the ops that change or remove an entry someone stored: a
// peer may do them on its own entries only, unless the rule says any_owner.
// (store counts when it replaces a held entry.)
var ownerOps = opBits["store"] | opBits["take"] | opBits["delete"] | opBits["transfer"]

// Rule is one [[rule]] table of a policy file. It grants its ops, on the
// names its patterns match, to the peers it selects; nothing else.
type Rule struct {
	Index    int    // 1 for the first rule of the file
	File     string // the policy file
	Line     int    // the line of its [[rule]] header
	Who      string // the selector as written, resolved: "uid 33", "group web (gid 1001)"
	UID      *uint32
	GID      *uint32 // matches the peer's primary or any supplementary group
	Names    []string
	AnyOwner bool
	ops      uint8
}

// Ref names the rule in audit lines: "rule 2 (policy.toml:7)".
func (r *Rule) Ref() string { return fmt.Sprintf("rule %d (%s:%d)", r.Index, r.File, r.Line) }

// Grants reports whether the rule lists op.
func (r *Rule) Grants(op string) bool {
	bit, ok := opBits[op]
	return ok && r.ops&bit != 0
}

func (r *Rule) selects(p *holder.Peer) bool {
	if r.UID != nil {
		return p.UID == *r.UID
	}
	return p.InGroup(*r.GID)
}

func (r *Rule) matches(name string) bool {
	for _, pat := range r.Names {
		if Match(pat, name) {
			return true
		}
	}
	return false
}

// Policy is a loaded policy file. It is immutable, so one *Policy may serve
// every connection at once; a reload builds a new one.
type Policy struct {
	file      string
	rules     []Rule
	holderUID uint32
}

// Default is the policy without a file: root and holderUID may do
// everything, nobody else anything.
func Default(holderUID uint32) *Policy { return &Policy{holderUID: holderUID} }

// Rules returns the rules in file order.
func (p *Policy) Rules() []Rule { return p.rules }

// File returns the policy file's path, empty for Default.
func (p *Policy) File() string { return p.file }

// Allow implements holder.Access. The protocol's dump and load ops, which
// move entries to or from another holder, are decided as "transfer".
func (p *Policy) Allow(req holder.AccessRequest) holder.Decision {
	op := req.Op.String()
	if req.Op == proto.OpDump || req.Op == proto.OpLoad {
		op = OpTransfer
	}
	return p.Check(req.Peer, op, req.Name, req.Owner)
}

// Check decides whether peer may do op (a policy op name: "get",
// "transfer", ...) on name.
//
// owner is the owner of the entry the op would act on, or nil when no entry
// is involved yet: then Check answers whether some entry of that name could
// be allowed, and the holder asks again with the owner once it has the entry
// under its lock. For list, name is empty to ask whether the peer may list
// at all, and an entry's name to ask whether it may appear (the holder also
// requires that the peer may get it).
//
// The decision names what decided: "root", "holder uid", a rule reference
// ("rule 2 (policy.toml:7)"), or "default: no rule grants OP on NAME to
// uid U".
func (p *Policy) Check(peer *holder.Peer, op, name string, owner *holder.Owner) holder.Decision {
	switch {
	case peer.UID == 0:
		return holder.Decision{Allowed: true, Rule: "root"}
	case peer.UID == p.holderUID:
		return holder.Decision{Allowed: true, Rule: "holder uid"}
	}
	bit := opBits[op]
	needOwner := owner != nil && bit&ownerOps != 0 && owner.UID != peer.UID
	var ownerOnly *Rule // a rule that grants op on name, but only on the peer's own entries
	for i := range p.rules {
		r := &p.rules[i]
		if r.ops&bit == 0 || !r.selects(peer) {
			continue
		}
		if name != "" && !r.matches(name) {
			continue
		}
		if needOwner && !r.AnyOwner {
			if ownerOnly == nil {
				ownerOnly = r
			}
			continue
		}
		return holder.Decision{Allowed: true, Rule: r.Ref()}
	}
	if ownerOnly != nil {
		return holder.Decision{Rule: fmt.Sprintf("%s: grants %s on entries uid %d stored; this one is uid %d's (any_owner is not set)",
			ownerOnly.Ref(), op, peer.UID, owner.UID), NotOwner: true}
	}
	var what strings.Builder
	fmt.Fprintf(&what, "default: no rule grants %s", op)
	if name != "" {
		fmt.Fprintf(&what, " on %q", name)
	}
	fmt.Fprintf(&what, " to uid %d", peer.UID)
	return holder.Decision{Rule: what.String()}
}

// ListPrefixes implements holder.ListScope: the literal beginnings (up to
// the first * or ?) of the name patterns of the rules that grant list to
// peer. Every name the peer may list starts with one of them; root and the
// holder's uid may list every name.
func (p *Policy) ListPrefixes(peer *holder.Peer) (prefixes []string, all bool) {
	if peer.UID == 0 || peer.UID == p.holderUID {
		return nil, true
	}
	bit := opBits["list"]
	for i := range p.rules {
		r := &p.rules[i]
		if r.ops&bit == 0 || !r.selects(peer) {
			continue
		}
		for _, pat := range r.Names {
			if i := strings.IndexAny(pat, "*?"); i >= 0 {
				pat = pat[:i]
			}
			if pat == "" {
				return nil, true
			}
			prefixes = append(prefixes, pat)
		}
	}
	return prefixes, false
}

var _ holder.ListScope = (*Policy)(nil)

// OpTransfer is the policy name of the transfer operation, for a holder
// that checks it with Check(peer, OpTransfer, name, owner).
const OpTransfer = "transfer"

var _ holder.Access = (*Policy)(nil)
