// Package systemd tests the units in deploy/systemd under a real systemd
// (252 on Debian 12), booted as PID 1 of private namespaces: its own PID,
// mount, network, UTS, IPC and cgroup namespaces, with tmpfs mounted over
// /tmp, /var/tmp and /run before it starts, so that its boot-time clean-up
// never touches the host's files (see /work/shared/PEERS.md).
//
// TestPackage installs the Debian package ("make deb") with dpkg -i in a
// systemd booted on an overlay of the host's root whose upper layer is a
// tmpfs: the host's disk is never written, and what the package leaves
// behind after dpkg --purge is exactly what that upper layer holds.
//
// Run as root: go test -race -v ./test/systemd. Without root, systemd,
// unshare or nsenter the tests skip, or fail when FDHOLDER_REQUIRE_PEERS is
// set, as in CI.
package systemd
