package main

import (
	"fmt"
	"io/fs"
	"net"
	"os"

	"github.com/coreos/go-systemd/v22/activation"
	"go.uber.org/zap"

	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/holder"
)

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START,
// sd_listen_fds(3)).
const listenFDsStart = 3

// activatedListeners takes every descriptor passed by socket activation
// (LISTEN_FDS, LISTEN_PID; sd_listen_fds(3)) and unsets those variables. It
// returns a listener for each listening AF_UNIX SOCK_SEQPACKET socket
// among them, which the caller owns, and hands every other descriptor to
// recoverFromFDStore. No descriptor passed stays open outside the returned
// listeners, on any path.
func activatedListeners(log *zap.Logger, reg *holder.Registry) (lns []*net.UnixListener, err error) {
	files := activation.Files(true)
	var others []*os.File
	defer func() {
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			lns = nil
		}
		recoverFromFDStore(log, reg, others)
	}()
	for i, f := range files {
		ok, ierr := ctlsock.IsControlListener(f)
		if ierr != nil {
			log.Warn("cannot inspect a passed descriptor", zap.Int("fd", listenFDsStart+i), zap.String("fd_name", f.Name()), zap.Error(ierr))
		}
		if !ok {
			others = append(others, f)
			continue
		}
		ln, lerr := ctlsock.FileListener(f) // a duplicate: f is closed either way
		f.Close()
		if lerr != nil {
			for _, rest := range files[i+1:] {
				rest.Close()
			}
			return lns, fmt.Errorf("socket activation: fd %d: %w", listenFDsStart+i, lerr)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// recoverFromFDStore is where held entries will come back after a restart
// of the holder under systemd: a later change stores each entry in
// systemd's file descriptor store (FDSTORE=1 with FDNAME=, sd_notify(3)),
// which passes them back at the next start alongside the control sockets,
// named by LISTEN_FDNAMES. Until then no descriptor passed is an entry, so
// each one is logged and closed. It takes ownership of files.
func recoverFromFDStore(log *zap.Logger, _ *holder.Registry, files []*os.File) {
	for _, f := range files {
		kind := "unknown"
		if fi, err := f.Stat(); err == nil {
			kind = fileKind(fi.Mode())
		}
		log.Warn("closing a passed descriptor that is not a control socket",
			zap.String("fd_name", f.Name()), zap.String("type", kind))
		f.Close()
	}
}

func fileKind(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "file"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeNamedPipe != 0:
		return "pipe"
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeDevice != 0:
		return "device"
	default:
		return t.String()
	}
}
