// Package sigs owns fdholderd's signals: the channels SIGTERM, SIGINT,
// SIGHUP and SIGUSR2 arrive on, their SIG_IGN across the execve(2) of an
// in-place upgrade, and catching them again at the first moment of the
// upgraded image, before any other package of fdholderd is initialized.
package sigs
