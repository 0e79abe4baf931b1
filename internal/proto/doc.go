// Package proto owns fdholder's wire protocol: the message types, their pure
// encoding (Encode*/Decode*, no I/O, fuzzed), the protocol's named limits and
// error codes, and the two files that call sendmsg/recvmsg with SCM_RIGHTS
// ancillary data (unix(7)): conn.go through the runtime's netpoller,
// blocking.go with blocking system calls.
//
// Messages travel over an AF_UNIX SOCK_SEQPACKET socket: the kernel keeps
// message boundaries and delivers each message's descriptors with it, so a
// request and the descriptor it carries can never be split or mixed with
// another request's. docs/protocol.md describes the format byte by byte.
//
// The package deliberately knows nothing of what the holder does with a
// request (naming rules aside, which both ends share): the registry, policy
// and logging live in internal/holder.
package proto
