// Package proto owns fdholder's wire protocol: the message types, their pure
// encoding (Append*/Decode*, no I/O, fuzzed), the protocol's named limits and
// error codes, and the two files that send and receive its messages with
// SCM_RIGHTS ancillary data (sendmsg/recvmsg, unix(7)): conn.go through the
// runtime's netpoller (a busy connection may first wait hot in ppoll(2),
// hotwait.go), blocking.go with blocking system calls.
//
// Messages travel over an AF_UNIX SOCK_SEQPACKET socket: the kernel keeps
// message boundaries and delivers each message's descriptors with it, so a
// request and the descriptor it carries can never be split or mixed with
// another request's. docs/protocol.md describes the format byte by byte.
//
// Besides the naming rules both ends share, what a request means to the
// holder (the registry, the policy, logging) is internal/holder's.
package proto
