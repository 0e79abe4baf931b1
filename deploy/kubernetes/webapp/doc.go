// Command webapp is the example app of deploy/kubernetes: a tiny static
// HTTP server that takes its listener the systemd way (sd_listen_fds(3),
// through go-systemd's activation package), so that "fdclient exec" can
// start it with the socket fdholderd holds.
//
// It answers "/" with its pid and "/healthz" with "ok" (the readiness
// probe), logs one "webapp: ready" line once it serves, and on SIGTERM or
// SIGINT drains: every response from then on says "Connection: close", the
// listener is closed in this process only (the holder keeps its copy, so
// new connections wait in the kernel's accept queue for the successor),
// and it exits once every open connection has ended, or after --drain.
package main
