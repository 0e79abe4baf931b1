// Command fdholderd is the holder: a daemon that keeps sockets open on
// behalf of services, so that a service can restart, crash or be redeployed
// while the kernel keeps queueing connections on its listener.
//
// Usage:
//
//	fdholderd [--socket PATH] [--socket-mode MODE] [--socket-group GROUP]
//	          [--policy FILE] [--max-conns N] [--max-conns-per-uid N]
//	          [--max-entries N] [--max-entries-per-uid N] [--idle-timeout DUR]
//	          [--request-timeout DUR] [--fd-reserve N]
//	          [--log-format console|json] [--log-level LEVEL]
//	          [--metrics-address ADDRESS [--metrics-max-listeners N]]
//	fdholderd --check [FLAGS]
//	fdholderd --version
//
// It serves the protocol of internal/proto on an AF_UNIX SOCK_SEQPACKET
// socket: the one systemd passes (socket activation, sd_listen_fds(3)),
// or else one it binds itself at --socket, $FDHOLDER_SOCKET, or the default
// path (see fdholder.SocketPath). It reports readiness, the number of held
// entries and watchdog keep-alives to systemd (sd_notify(3)), copies every
// entry into systemd's file descriptor store, reloads --policy on SIGHUP,
// upgrades itself in place on SIGUSR2, and shuts down gracefully on SIGTERM
// or SIGINT. With --metrics-address it serves Prometheus metrics
// (internal/metrics). "fdholderd --help" (flags.go) tells the rest.
//
// This package is wiring: the registry and the server are internal/holder,
// the policy internal/policy, the control socket internal/ctlsock, the
// notifications internal/sdnotify, the file descriptor store and the
// upgrade's hand-off internal/fdstore.
package main
