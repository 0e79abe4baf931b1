// Package testutil holds helpers shared by the test suites: the descriptor
// leak check, short socket directories, the switch that makes a missing real
// peer a failure in CI, and building the project's binaries once.
//
// It is imported by tests only.
package testutil
