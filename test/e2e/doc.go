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
// TestMain builds the two binaries once (with -race) and starts nothing:
// each test starts its own fdholderd and gunicorns, and stops them by pid.
// The peers are found at run time (an interpreter that can import gunicorn:
// $FDHOLDER_PYTHON, /usr/bin/python3, then python3 on PATH; wrk on PATH); a
// missing one skips its test, or fails it when FDHOLDER_REQUIRE_PEERS is set
// (see internal/testutil). Run them with
//
//	FDHOLDER_REQUIRE_PEERS=1 go test -race -v ./test/e2e/
//
// and read the figures they log: requests, socket errors and maximum
// latency of each run, side by side with and without the holder.
package e2e
