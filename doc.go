// Package fdholder is the Go client of fdholderd, a daemon that holds
// listening sockets (and other sockets) across the restarts of the services
// that use them.
//
// A service that gets its listener through the holder keeps the very same
// kernel socket across restarts, crashes and deploys: while no process runs,
// the kernel keeps queueing connections on the held socket, so none is
// refused and none is reset.
//
// The simplest use is Listen, a get-or-create:
//
//	c, err := fdholder.Dial(ctx, "") // the default socket path
//	...
//	ln, err := c.Listen(ctx, "web", "tcp", "127.0.0.1:8080")
//
// Descriptor ownership is stated on every method: Store leaves the caller's
// socket with the caller (closing it afterwards is safe: the holder keeps its
// own copy), and Get, Take, Listen, ListenPacket, ListenFile and CopySocket
// return a new descriptor that the caller owns and must close. GetFD and
// ListenFD return it as an FD, without the *os.File (and its registration
// with the runtime's netpoller), for a program that only passes it on.
//
// A server that binds its own port is brought under the holder while it
// runs with Adopt: it copies the server's listener out of its descriptor
// table (pidfd_getfd(2), with ptrace rights over it) and stores it, and the
// server keeps serving on the very same socket.
//
// Programs that should not link this package can be started with
// "fdclient exec", which passes held sockets the systemd way (LISTEN_FDS);
// see sd_listen_fds(3) and go-systemd's activation package.
package fdholder
