// Package e2etest holds what the end-to-end suites (test/e2e, test/servers)
// share: building fdholderd and fdclient once, child processes with their
// output in files, a running fdholderd driven through fdclient, wrk runs
// and their reports, and what /proc says about processes and sockets.
//
// It is imported by tests only.
package e2etest
