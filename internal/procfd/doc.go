// Package procfd copies descriptors out of another running process: it pins
// the process with pidfd_open(2), lists its sockets from /proc/PID/fd
// (proc(5)) and copies them with pidfd_getfd(2). When the kernel refuses, its
// errors say what to change: the ptrace access rules that pidfd_getfd obeys,
// the Yama setting in force, a kernel too old for pidfd_getfd.
//
// What a copied socket is, and whether it is the one wanted, is for the
// caller to decide (with internal/sockfd).
package procfd
