// Package sdnotify is the one package that talks to $NOTIFY_SOCKET
// (sd_notify(3)), and Socket.Send its one way to send there. Notifier tells
// the service manager how the holder is doing: READY=1 once serving,
// STATUS= with the number of held entries, kept up to date without ever
// blocking whoever reports a change, and STOPPING=1 on the way out; it sees
// the registry only through a function that counts its entries. Watchdog
// sends WATCHDOG=1. Socket also sends the state lines that carry
// descriptors, FDSTORE=1 and FDSTOREREMOVE=1 (sd_pid_notify_with_fds(3));
// internal/fdstore decides what to send. Everything is a no-op, or
// OpenSocket fails with ErrNoNotifySocket, when NOTIFY_SOCKET is unset.
package sdnotify
