package main

import (
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/fdstore"
	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/sdnotify"
)

// passedDescriptors returns what this process was started with: the
// descriptors of an in-place upgrade (fdstore.HandoffEnv) if any, else
// those of systemd (LISTEN_FDS: the activated control socket and the
// file descriptor store; sd_listen_fds(3)), sorted into control listeners
// and entries. source says which ("upgrade", "systemd" or "" for none).
// file is the control socket's file when an upgraded holder had created it.
// The caller owns rec's descriptors: it hands them to recoverEntries, or
// closes them with rec.Close.
func passedDescriptors(log *zap.Logger) (rec fdstore.Recovered, file *fdstore.SocketFile, source string, err error) {
	passed, file, err := fdstore.FromHandoff()
	if err != nil {
		return rec, nil, "", fmt.Errorf("upgrade hand-off: %w", err)
	}
	source = "upgrade"
	if passed == nil {
		// Listened unsets LISTEN_* in any case, so that an upgraded
		// binary never mistakes them for its own.
		passed, err = fdstore.Listened()
		if err != nil {
			return rec, nil, "", fmt.Errorf("socket activation: %w", err)
		}
		source = "systemd"
	}
	if len(passed) == 0 {
		return rec, nil, "", nil
	}
	return fdstore.Sort(log, passed, time.Now()), file, source, nil
}

// openMirror sets d.mirror, the file descriptor store mirror, when a
// service manager listens on NOTIFY_SOCKET, and leaves it nil otherwise
// (or if the socket cannot be opened, which is logged). The mirror is
// harmless without FileDescriptorStoreMax=: systemd then drops what it is
// sent. d owns the notification socket, which the mirror borrows, and
// close closes it after the registry, the mirror's last sender.
func (d *holderd) openMirror(nextSeq uint64) {
	n, err := sdnotify.OpenSocket()
	if err == sdnotify.ErrNoNotifySocket {
		return
	}
	if err != nil {
		d.log.Warn("file descriptor store: cannot open the notification socket; entries will not survive a crash of the holder", zap.Error(err))
		return
	}
	d.onClose(func() { n.Close() })
	d.mirror = fdstore.NewMirror(n, d.log, nextSeq)
}

// recoverEntries holds again every entry recovered from systemd's file
// descriptor store or an upgrade's hand-off, with its metadata, then drops
// from the store what recovery found stale (metadata of entries not
// recovered, sockets no entry holds, unknown descriptors). The recovered
// entries stay in the store as they are: the mirror adopts them. So the
// store holds exactly the registry's entries afterwards. It takes
// ownership of rec's entries; the control listeners are returned as
// *net.UnixListener, which the caller owns.
func (d *holderd) recoverEntries(rec fdstore.Recovered, source string) ([]*net.UnixListener, error) {
	if d.mirror != nil {
		d.mirror.Expect(rec.Entries)
	}
	loaded := 0
	for _, e := range rec.Entries {
		if _, err := d.reg.Load(e.Entry, e.FD, holder.StoreOptions{}); err != nil {
			d.log.Warn("recovery: entry not held again", zap.String("name", e.Entry.Name), zap.Error(err))
			continue
		}
		loaded++
	}
	if d.mirror != nil {
		d.mirror.EndRecovery()
		d.mirror.Remove(rec.Stale)
	}
	if source != "" {
		d.log.Info("recovered", zap.String("source", source), zap.Int("entries", loaded),
			zap.Int("expired", rec.Expired), zap.Int("lost", rec.Lost), zap.Int("dropped", rec.Dropped),
			zap.Int("control_sockets", len(rec.Controls)))
	}
	var lns []*net.UnixListener
	var ferr error
	for _, f := range rec.Controls {
		if ferr == nil {
			ln, err := ctlsock.FileListener(f) // a duplicate: f is closed either way
			if err != nil {
				ferr = fmt.Errorf("control socket %s: %w", f.Name(), err)
			} else {
				lns = append(lns, ln)
			}
		}
		f.Close()
	}
	if ferr != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, ferr
	}
	return lns, nil
}
