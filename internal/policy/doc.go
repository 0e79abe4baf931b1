// Package policy owns the access policy of fdholderd: reading the policy
// file (TOML 1.0, decoded with go-toml and checked against the schema in
// toml.go; docs/security.md describes it) and deciding whether a peer may do
// an operation on a name (policy.go, glob.go).
//
// A *Policy implements holder.Access, so cmd/fdholderd can hand it to the
// holder's Server and swap it on SIGHUP. The dependency runs one way: this
// package uses internal/holder's types (Peer, Owner, Decision); the holder
// knows only its Access interface.
//
// Rules only grant: what no rule grants is refused. Root and the holder's
// own uid may always do everything (root could ptrace the holder anyway).
package policy
