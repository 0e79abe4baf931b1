// Command fdclient is the command-line client of fdholderd: it binds sockets
// and stores them in the holder (listen, store), lists and deletes held
// entries (list, delete), copies entries to another holder (transfer), and
// starts programs with held sockets the way systemd socket activation does
// (exec, see sd_listen_fds(3)).
//
// It speaks to the holder through the root package's Client. "fdclient
// --help" (usage.go) is the user documentation, including the exit codes
// scripts can rely on.
//
// Layout: main.go is wiring only (signals, os.Exit); run.go parses the
// command line and maps errors to exit codes; one file per command; and
// execfds_linux.go arranges the descriptors exec hands to the program, the
// one delicate part.
package main
