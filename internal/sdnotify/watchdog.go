package sdnotify

import (
	"context"
	"errors"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// Watchdog sends WATCHDOG=1 at half the interval systemd asks for
// (WatchdogSec=, $WATCHDOG_USEC; sd_watchdog_enabled(3)) until ctx is
// done, each time after alive returns: alive takes the registry's lock, so
// a holder stuck on it stops pinging, and systemd kills and restarts it.
// The store keeps its entries across that restart. It returns at once; the
// pings run in a goroutine of their own, which owns the Socket they go
// through and closes it when ctx is done. Without NOTIFY_SOCKET there is
// no one to ping, and it does nothing.
func Watchdog(ctx context.Context, log *zap.Logger, alive func()) {
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("watchdog: cannot read the interval", zap.Error(err))
		return
	}
	if interval <= 0 {
		return
	}
	s, err := OpenSocket()
	if errors.Is(err, ErrNoNotifySocket) {
		return
	}
	if err != nil {
		log.Warn("watchdog: cannot open the notification socket", zap.Error(err))
		return
	}
	go func() {
		defer s.Close()
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				alive()
				if err := s.Send(sddaemon.SdNotifyWatchdog); err != nil {
					log.Warn("watchdog: cannot notify", zap.Error(err))
				}
			}
		}
	}()
}
