package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"

	"go.uber.org/zap"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/fdstore"
)

// listen sets d's control sockets: recovered, the listeners passed at
// start (fdstore.go), adopted as this process's own socket file when an
// upgraded holder had bound it (file), else served as systemd's (socket
// activation); with none, a socket bound at --socket, $FDHOLDER_SOCKET or
// the default path. It owns recovered from the call on.
func (d *holderd) listen(ctx context.Context, recovered []*net.UnixListener, file *fdstore.SocketFile, opts ctlsock.Options) error {
	switch {
	case file != nil && len(recovered) == 1:
		// An upgrade of a holder that had bound its own socket: it is
		// still ours to remove on exit.
		d.sock = ctlsock.Adopt(file.Path, file.Dev, file.Ino, recovered[0])
		d.lns = recovered
		return nil
	case len(recovered) > 0:
		d.activated = true
		d.lns = recovered
		if d.cfg.socket != "" {
			d.log.Warn("socket activation: serving the sockets passed by systemd, not --socket", zap.String("ignored_path", d.cfg.socket))
		}
		if d.cfg.socketMode != 0 || d.cfg.socketGroup != "" {
			d.log.Warn("socket activation: --socket-mode and --socket-group are ignored; set SocketMode= and SocketGroup= in the .socket unit")
		}
		return nil
	}
	path := d.cfg.socket
	if path == "" {
		path = fdholder.SocketPath()
	}
	sock, err := ctlsock.ListenWith(ctx, path, opts)
	if err != nil {
		return err
	}
	if sock.Replaced {
		d.log.Info("replaced a stale socket file", zap.String("path", path))
	}
	d.sock = sock
	d.lns = []*net.UnixListener{sock.Listener}
	return nil
}

// removeSocketFile removes the control socket's file at exit, if this
// process (or the one it upgraded) bound it and it is still that file.
func (d *holderd) removeSocketFile() {
	if d.sock == nil {
		return
	}
	removed, err := d.sock.RemoveFile()
	switch {
	case err != nil:
		d.log.Warn("cannot remove the socket file", zap.String("path", d.sock.Path), zap.Error(err))
	case !removed:
		d.log.Info("the socket file is no longer ours; left in place", zap.String("path", d.sock.Path))
	}
}

// socketOptions turns --socket-mode and --socket-group into ctlsock's.
func socketOptions(cfg config) (ctlsock.Options, error) {
	opts := ctlsock.Options{Mode: cfg.socketMode, GID: -1}
	if cfg.socketGroup == "" {
		return opts, nil
	}
	if gid, err := strconv.ParseUint(cfg.socketGroup, 10, 31); err == nil {
		opts.GID = int(gid)
		return opts, nil
	}
	g, err := user.LookupGroup(cfg.socketGroup)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return opts, fmt.Errorf("--socket-group %s: no such group (getent group %s finds none)", cfg.socketGroup, cfg.socketGroup)
		}
		return opts, fmt.Errorf("--socket-group %s: %w", cfg.socketGroup, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return opts, fmt.Errorf("--socket-group %s: gid %q: %w", cfg.socketGroup, g.Gid, err)
	}
	opts.GID = gid
	return opts, nil
}
