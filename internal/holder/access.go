package holder

import (
	"fmt"

	"github.com/fdholder/fdholder/internal/proto"
)

// Access decides what a peer may do. cmd/fdholderd passes the policy of
// internal/policy; Server.SetAccess swaps it while serving (SIGHUP).
// Implementations must be safe for concurrent use, must not block, and are
// called with the registry's lock held (so that an owner check and the
// change it allows happen as one step): they may not call the registry.
type Access interface {
	Allow(AccessRequest) Decision
}

// ListScope is implemented by an Access that can say where, in name
// order, the entries a peer may list lie: every name it may list starts
// with one of prefixes (all: any name may). A list page for a peer other
// than root and the holder's uid then visits only those names, so its
// cost does not grow with the entries the peer may not see (issue 8).
type ListScope interface {
	ListPrefixes(p *Peer) (prefixes []string, all bool)
}

// AccessRequest is one question to an Access.
type AccessRequest struct {
	Peer *Peer
	Op   proto.Op
	// Name is the entry's name; empty for "may the peer list at all".
	Name string
	// Owner is the owner of the entry the op acts on (the entry deleted,
	// taken, replaced, or shown by list), or nil while the holder has not
	// looked the entry up: then the question is whether the op could be
	// allowed on that name for some owner.
	Owner *Owner
}

// Decision is an Access's answer.
type Decision struct {
	Allowed bool
	// Rule says what decided, for the audit log's "rule" field: "root", "rule
	// 2 (policy.toml:7)", "default: no rule grants list to uid 1000".
	Rule string
	// NotOwner: the op was refused only because the entry belongs to another
	// uid.
	NotOwner bool
}

// DefaultAccess is the access without a policy: root and HolderUID may do
// everything, and nobody else anything.
type DefaultAccess struct{ HolderUID uint32 }

// Allow implements Access.
func (a DefaultAccess) Allow(req AccessRequest) Decision {
	switch req.Peer.UID {
	case 0:
		return Decision{Allowed: true, Rule: "root"}
	case a.HolderUID:
		return Decision{Allowed: true, Rule: "holder uid"}
	}
	return Decision{Rule: fmt.Sprintf("default: no policy; only root and uid %d may use the holder", a.HolderUID)}
}

// deniedError is a request the Access refused. It unwraps to
// proto.ErrPermission; the audit log adds its rule.
type deniedError struct {
	msg  string
	rule string
}

func (e *deniedError) Error() string { return e.msg }
func (e *deniedError) Unwrap() error { return proto.ErrPermission }

// denied builds the error of a refused request. The message names the op
// and the peer's uid but nothing about other entries: whether the name is
// held is not revealed to a peer that may not see it.
func denied(p *Peer, op proto.Op, d Decision) error {
	msg := fmt.Sprintf("permission denied: uid %d may not %s", p.UID, op)
	if d.NotOwner {
		msg += " entries stored by another uid"
	}
	return &deniedError{msg: msg, rule: d.Rule}
}
