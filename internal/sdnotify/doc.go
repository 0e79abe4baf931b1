// Package sdnotify tells the service manager how the holder is doing, with
// sd_notify(3) datagrams sent through go-systemd's daemon.SdNotify:
// READY=1 once serving, STATUS= with the number of held entries, kept up to
// date without ever blocking whoever reports a change, and STOPPING=1 on
// the way out. Everything is a no-op when NOTIFY_SOCKET is unset. It sees
// the registry only through a function that counts its entries.
//
// The other messages to NOTIFY_SOCKET are sent elsewhere: WATCHDOG=1 by
// cmd/fdholderd (watchdog.go), and FDSTORE=1/FDSTOREREMOVE=1, which carry
// descriptors that daemon.SdNotify cannot attach, by internal/fdstore
// (notify.go), which also reads LISTEN_FDS.
package sdnotify
