// Package policy owns the access policy of fdholderd: parsing the policy
// file (a small, strict subset of TOML, see docs/security.md for its
// grammar) and deciding whether a peer may do an operation on a name.
//
// A *Policy implements holder.Access, so cmd/fdholderd can hand it to the
// holder's Server and swap it on SIGHUP. The dependency runs one way: this
// package uses internal/holder's types (Peer, Owner, Decision); the holder
// knows only its Access interface.
//
// What it does not do: it never grants anything to a peer the kernel did
// not identify, it has no deny rules (rules only grant, and what no rule
// grants is refused), and it cannot restrict root or the holder's own uid,
// which may always do everything (root could ptrace the holder anyway).
package policy
