// Package holder owns the registry of held descriptors and the server that
// serves it over the protocol of internal/proto.
//
// Ownership: the Registry owns every descriptor stored in it. A descriptor
// is closed exactly once, when its entry is deleted, replaced, expired or
// taken, or the registry is closed, and never while a get is still sending
// it (entries are reference counted for that).
//
// Access control: the Server identifies each peer once, when it accepts
// the connection (SO_PEERCRED and SO_PEERGROUPS, socket(7)), and asks its
// Access hook about every request of a peer other than root and the
// holder's own uid; checks that depend on an entry's owner run under the
// registry's lock, so that the entry cannot change in between. The policy
// file and its decoding live in internal/policy, which implements Access
// and imports this package (not the other way round). The Server also
// enforces the Limits (connections, entries in total and per uid, idle and
// request timeouts, a reserve of descriptors).
//
// An Observer (RegistryOptions.Observer) sees every entry that starts or
// stops being held, in order, so that a copy can be kept elsewhere; dump and
// load move entries in bulk between holders, behind one authorization point
// (authorizeTransfer in ops.go, which asks the Access).
//
// Files by concern: registry.go holds the entries; server.go is the
// server's life (accept, admission limits, Shutdown, Handoff, Close);
// conn.go a connection's loop and the dispatch of each request; ops.go
// every op, dump and load included; deliver.go how replies are sent;
// audit.go the audit line; access.go, limits.go, peer.go, observer.go
// and requests.go what they are named for.
//
// cmd/fdholderd wires systemd, the command-line flags and the control
// socket to it, and internal/fdstore implements the Observer that copies
// entries into systemd's store.
package holder
