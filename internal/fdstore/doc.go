// Package fdstore keeps a copy of the holder's entries in systemd's file
// descriptor store, so that they survive the holder's own crash or restart,
// and sorts the descriptors passed at the next start back into entries.
//
// It owns the store's layout (see docs/operations.md, "What is in the file
// descriptor store"): each held socket is stored once under the name
// "fhs" + its inode number in base 36, and each entry's metadata (its name,
// owner, stored and expiry times, network, address, and the inode of its
// socket) in a sealed memfd under "fhm" + a sequence number in base 36. The
// same layout, with the control socket named "control", carries every entry
// across an in-place upgrade (exec of a new binary in the same process).
//
// Why generated names rather than the entries' own: the FDNAME carries no
// metadata and systemd keeps only one copy of a socket stored twice (it
// compares the open file, not the name), so two entries holding the same
// socket would otherwise lose one of them. Every name the holder accepts is
// also a valid FDNAME in systemd 252 (printable ASCII without ':', at most
// 255 bytes), but the entry names travel in the metadata, where any byte
// string round-trips.
//
// It talks to systemd through $NOTIFY_SOCKET (notify.go: FDSTORE=1 and
// FDSTOREREMOVE=1 with descriptors, sd_pid_notify_with_fds(3)) and reads
// what sd_listen_fds(3) passes (recover.go: LISTEN_FDS, LISTEN_FDNAMES).
// What the holder holds is internal/holder's to decide; Mirror copies the
// registry's changes.
package fdstore
