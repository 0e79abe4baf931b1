// Package holder owns the registry of held descriptors and the server that
// serves it over the protocol of internal/proto.
//
// Ownership: the Registry owns every descriptor stored in it. A descriptor
// is closed exactly once, when its entry is deleted, replaced, expired or
// taken, or the registry is closed, and never while a get is still sending
// it (entries are reference counted for that).
//
// An Observer (RegistryOptions.Observer) sees every entry that starts or
// stops being held, in order, so that a copy can be kept elsewhere; dump and
// load move entries in bulk between holders, behind one authorization point
// (authorizeTransfer in transfer.go).
//
// The package knows nothing of systemd, of command-line flags or of where
// the control socket lives: cmd/fdholderd wires those, and internal/fdstore
// implements the Observer that copies entries into systemd's store.
package holder
