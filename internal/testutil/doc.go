// Package testutil holds helpers shared by the test suites: the descriptor
// leak check, short socket directories, the switch that makes a missing real
// peer a failure in CI, building the project's binaries once, and reading
// wrk's report.
//
// It is imported by tests only.
package testutil
