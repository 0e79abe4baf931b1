// Package ctlsock sets up the holder's control socket: the AF_UNIX
// SOCK_SEQPACKET listener that clients dial (unix(7)).
//
// It owns three things. Listen creates the socket file safely: the parent
// directory is created if missing, the socket appears at its final path
// already in mode 0600 (it is bound inside a private 0700 directory, then
// renamed into place), a live holder on the path is refused and named by
// its pid (SO_PEERCRED), a stale socket file (connect(2) gives ECONNREFUSED)
// is replaced, and anything that is not a socket is refused and left alone.
// Socket.RemoveFile removes the file on exit only if it is still the one
// this process created, so that a successor's socket is never removed.
// CheckDir, TrustedHolders and CheckPeer decide which socket directories
// the holder and its clients use, and which holder uids a client talks to,
// so that another user cannot squat a socket path (trust.go).
// IsControlListener tells whether a descriptor passed by socket activation
// (sd_listen_fds(3), read by internal/fdstore) is such a listener.
//
// internal/holder serves the socket; the root package's SocketPath decides
// its path.
package ctlsock
