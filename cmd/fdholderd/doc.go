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
// The running holder is a holderd (holderd.go), tableflip's Upgrader
// shape: its fields are the daemon's state, its methods its life. Where
// each part is handled:
//
//	main.go     run: flags, --help, --version, --check, the loggers, then a holderd
//	holderd.go  start (start-up, in order), loop (the signal loop),
//	            serve (a server on every control listener), shutdown
//	            (graceful; a second SIGTERM or SIGINT forces it), and sd_notify:
//	            READY=1 at the end of start, STATUS= from the registry's
//	            OnChange, the watchdog, STOPPING=1 in shutdown
//	policy.go   --policy: loaded at start, reloaded on SIGHUP (reload)
//	upgrade.go  SIGUSR2 (upgrade): --check of the new binary, the hand-off,
//	            execve(2), serving again if it failed
//	fdstore.go  the descriptors passed at start (an upgrade's or systemd's),
//	            recovery of the entries, the file descriptor store mirror
//	socket.go   the control socket: bound, adopted or activated; removed at exit
//	metrics.go  --metrics-address
//	rlimit.go   RLIMIT_NOFILE
//	check.go    --check
//	flags.go    the flags and the --help text
//	logger.go   the log and audit loggers: one lineCore each, buffering a
//	            line below warn and writing it at once from warn, into
//	            their shared buffer
//	console.go  the console encoder: zap's console format, cheaper
//
// The rest lives in internal packages: the registry and the server in
// internal/holder, the policy in internal/policy, the control socket in
// internal/ctlsock, the notifications in internal/sdnotify, the file
// descriptor store and the upgrade's hand-off in internal/fdstore, the
// signal channels in cmd/fdholderd/internal/sigs.
package main
