// Command fdholderd is the holder: a daemon that keeps sockets open on
// behalf of services, so that a service can restart, crash or be redeployed
// while the kernel keeps queueing connections on its listener.
//
// Usage:
//
//	fdholderd [--socket PATH] [--log-format console|json] [--log-level LEVEL]
//
// It serves the protocol of internal/proto on an AF_UNIX SOCK_SEQPACKET
// socket: the one systemd passes (socket activation, sd_listen_fds(3)),
// or else one it binds itself at --socket, $FDHOLDER_SOCKET, or the default
// path (see fdholder.SocketPath). It reports readiness and the number of
// held entries to systemd (sd_notify(3)), and shuts down gracefully on
// SIGTERM or SIGINT. "fdholderd --help" tells the rest.
//
// This package is wiring only: the registry and the server are
// internal/holder, the control socket internal/ctlsock, the notifications
// internal/sdnotify.
package main
