package sdnotify

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// StatusInterval is the shortest time between two STATUS= updates. A burst
// of changes within it is reported once, with the count at its end: the
// status line is for people (systemctl status), not an event stream.
const StatusInterval = 100 * time.Millisecond

// Notifier sends the holder's notifications. Its methods are safe for
// concurrent use. The zero value is not usable; call New.
type Notifier struct {
	log     *zap.Logger
	count   func() int
	enabled bool

	poke chan struct{} // capacity 1: a pending "the count changed"
	stop chan struct{} // closed by Stopping
	done chan struct{} // closed when the status loop has returned

	startOnce, stopOnce sync.Once
}

// New returns a notifier that reports count() as the number of held
// entries. count is called from the notifier's own goroutine, never from
// Changed, so it may take a lock briefly. It is disabled (every method a
// no-op) if NOTIFY_SOCKET is unset.
func New(log *zap.Logger, count func() int) *Notifier {
	if log == nil {
		log = zap.NewNop()
	}
	return &Notifier{
		log:     log,
		count:   count,
		enabled: os.Getenv("NOTIFY_SOCKET") != "",
		poke:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Enabled reports whether a service manager is listening (NOTIFY_SOCKET).
func (n *Notifier) Enabled() bool { return n.enabled }

// Status formats the STATUS= line for a number of entries.
func Status(entries int) string {
	if entries == 1 {
		return "STATUS=holding 1 entry"
	}
	return fmt.Sprintf("STATUS=holding %d entries", entries)
}

// Ready sends READY=1 with the current status and starts keeping the status
// up to date. Call it once the holder serves.
func (n *Notifier) Ready() {
	if !n.enabled {
		return
	}
	n.startOnce.Do(func() {
		last := n.count()
		n.send(daemon.SdNotifyReady + "\n" + Status(last))
		go n.loop(last)
	})
}

// Changed says the number of entries may have changed. It never blocks:
// it leaves at most one pending wake-up for the status loop, which then
// reads the count itself. Reading the count there, rather than passing it
// along, keeps the last report right even when two changes report their
// counts out of order.
func (n *Notifier) Changed() {
	select {
	case n.poke <- struct{}{}:
	default: // a wake-up is already pending; it will see this change too
	}
}

// Stopping stops the status updates and sends STOPPING=1. Changes after it
// are not reported.
func (n *Notifier) Stopping() {
	if !n.enabled {
		return
	}
	n.stopOnce.Do(func() {
		close(n.stop)
		n.startOnce.Do(func() { close(n.done) }) // never started: nothing to wait for
		<-n.done
		n.send(daemon.SdNotifyStopping + "\nSTATUS=stopping")
	})
}

func (n *Notifier) loop(last int) {
	defer close(n.done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-n.poke:
		case <-n.stop:
			return
		}
		if c := n.count(); c != last {
			n.send(Status(c))
			last = c
		}
		// Let a burst pile up into the single pending wake-up.
		t.Reset(StatusInterval)
		select {
		case <-t.C:
		case <-n.stop:
			return
		}
	}
}

func (n *Notifier) send(state string) {
	// unsetEnvironment false: every later notification needs NOTIFY_SOCKET.
	if err := Notify(state); err != nil {
		n.log.Warn("cannot notify the service manager", zap.String("state", state), zap.Error(err))
	}
}
