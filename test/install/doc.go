// Package install tests fdholder as a package manager installs it: "make"
// builds static binaries that say their version and that two builds
// compare equal; "make deb" builds a package lintian finds no error in;
// the shell completions complete commands, flags and the names a running
// holder holds, in real shells. The package installed and run under a
// real systemd is tested in test/systemd (TestPackage).
//
// Needs make, dpkg-deb, lintian, bash with bash-completion, zsh and fish;
// a missing one skips its test, or fails it when FDHOLDER_REQUIRE_PEERS is
// set, as in CI.
package install
