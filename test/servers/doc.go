// Package servers proves docs/servers.md: every recipe there (nginx,
// HAProxy, lighttpd, uWSGI, gunicorn, uvicorn, Node.js, a Go net/http
// server, a Python standard-library server) is started exactly as written,
// through "fdclient exec", and restarted gracefully under wrk's load
// (-H 'Connection: close': a new connection per request) with no socket
// error and no failed reply, beside the same restarts with the server
// binding its port itself. It restarts nginx and gunicorn the other way
// round too (the new instance first, then the old one stopped), kills each
// server with kill -9, and reports what each graceful stop does to
// keep-alive clients.
//
// The package has no code of its own: everything is in its _test.go files.
// The servers run in parallel (t.Parallel), each with its own fdholderd,
// its own port (bound by the kernel, never fixed) and its own directory
// for configuration, pid and log files. Run it with
//
//	FDHOLDER_REQUIRE_PEERS=1 go test -race -v -run TestServers ./test/servers/
//
// and read the figures it logs (requests, socket errors and worst latency
// of each run). A missing server skips its test, or fails it when
// FDHOLDER_REQUIRE_PEERS is set. The Debian packages: nginx haproxy
// lighttpd uwsgi-core uwsgi-plugin-python3 nodejs python3-gunicorn
// python3-uvicorn wrk.
package servers
