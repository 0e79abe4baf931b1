// Package sdnotify tells the service manager how the holder is doing, with
// sd_notify(3) datagrams sent through go-systemd's daemon.SdNotify:
// READY=1 once serving, STATUS= with the number of held entries, kept up to
// date without ever blocking whoever reports a change, and STOPPING=1 on
// the way out. Everything is a no-op when NOTIFY_SOCKET is unset.
//
// It deliberately does not read LISTEN_FDS (cmd/fdholderd does, with
// go-systemd's activation package), does not pass descriptors to systemd's
// file descriptor store (FDSTORE=1, which daemon.SdNotify cannot send), and
// knows nothing of the registry beyond a function that counts its entries.
package sdnotify
