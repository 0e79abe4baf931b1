// Package e2e holds the end-to-end tests of the product promise, driven with
// real processes only: the fdholderd and fdclient binaries built from this
// module, gunicorn (a real consumer of LISTEN_FDS, see sd_listen_fds(3)) and
// wrk as the load.
//
// The promise: a server restarted again and again under load through
// "fdclient exec" loses no connection; a server killed with kill -9 loses
// only the connections it had accepted, and connections made while it is
// dead are queued by the kernel on the held socket and served by its
// successor. Every test runs the same scenario without the holder too, so
// that the errors users see today are measured beside it.
//
// The package has no code of its own: everything is in its _test.go files.
// The peers are found at run time; a missing one skips its test, or fails it
// when FDHOLDER_REQUIRE_PEERS is set (see internal/testutil).
package e2e
