// Package testutil holds helpers shared by the test suites: the descriptor
// leak check, short socket directories, the switch that makes a missing real
// peer a failure in CI, building the project's binaries once, a loopback
// listener, and children tied to the test's life. What the end-to-end
// suites share (processes, wrk and its report, waiting on a fact) is in
// internal/e2etest.
//
// It is imported by tests only.
package testutil
