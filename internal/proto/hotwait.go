package proto

// This file lets a busy connection's receive skip the runtime's netpoller:
// RecvLarge, finding no message, may wait in ppoll(2) on its one socket
// for a short window before it parks in the netpoller.

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// HotWait decides and times the hot waits of the Conns that share it (a
// holder's). A receive through the netpoller that finds no message costs
// a recvmsg(2) that fails with EAGAIN, the goroutine parked, epoll_pwait(2)
// and the goroutine woken through the scheduler: 4.9 system calls a
// request where a C server makes 2. A thread blocked in ppoll(2) on the
// socket is woken by the peer's sendmsg(2) directly, as a C server's
// blocking recvmsg is.
//
// But a thread in a system call keeps its P (the runtime's right to run Go
// code) until sysmon takes it back, so a hot wait is only worth it when
// nothing else wants that P. A Conn waits hot only when
//   - no request is being served by any Conn of h (Begin, End): with
//     several busy connections the netpoller already serves many
//     readiness events per epoll_pwait, and a blocked thread would cost a
//     P and a context switch each;
//   - fewer than h's bound are waiting hot: runtime.GOMAXPROCS - 1 (at
//     least 1), so that one P is left to poll the netpoller for every
//     other connection, and the threads blocked so (which the runtime
//     keeps once started) stay that few however many connections there are.
//
// A connection that stays quiet for the window goes back to the netpoller,
// where it costs no thread.
type HotWait struct {
	window time.Duration
	max    int32
	n      atomic.Int32 // waiting now
	peak   atomic.Int32 // most waiting at once (Peak)
	busy   atomic.Int32 // requests being served (Begin, End)
}

// HotWindow is how long a receive waits hot at most: a client that sends
// its next request within it is served without the netpoller. A Close, a
// read deadline or a shutdown is seen at most this late by a Conn waiting
// hot, and with GOMAXPROCS=1 another connection may wait this long.
const HotWindow = 200 * time.Microsecond

// NewHotWait returns a HotWait of window (at most that long in ppoll(2)
// per wait) for at most limit Conns at once; limit <= 0 means
// runtime.GOMAXPROCS(0) - 1, at least 1.
func NewHotWait(window time.Duration, limit int) *HotWait {
	if limit <= 0 {
		limit = max(runtime.GOMAXPROCS(0)-1, 1)
	}
	return &HotWait{window: window, max: int32(limit)}
}

// Peak returns the most Conns that have waited hot at once.
func (h *HotWait) Peak() int { return int(h.peak.Load()) }

// Begin tells h that a request of one of its Conns is being served, End
// that it was: no Conn waits hot in between.
func (h *HotWait) Begin() { h.busy.Add(1) }

// End: see Begin.
func (h *HotWait) End() { h.busy.Add(-1) }

// SetHotWait makes RecvLarge wait hot under h (nil: never). Call it before
// the Conn is used.
func (c *Conn) SetHotWait(h *HotWait) {
	c.hot = h
	if h != nil {
		c.pollTimeout = unix.NsecToTimespec(int64(h.window))
	}
}

// waitHot waits until fd is readable, for up to the window, if h allows,
// and reports whether it is: a message, the end of the stream or an error
// to receive.
func (c *Conn) waitHot(fd int) bool {
	h := c.hot
	if h.busy.Load() > 0 {
		return false
	}
	n := h.n.Add(1)
	defer h.n.Add(-1)
	if n > h.max {
		return false
	}
	for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
	}
	c.pollFD = [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	// The system call writes the time left back into its timeout
	// (ppoll(2), "C library/kernel differences"): pass a copy.
	c.pollLeft = c.pollTimeout
	c.hotNow.Store(true)
	ready, err := unix.Ppoll(c.pollFD[:], &c.pollLeft, nil)
	c.hotNow.Store(false)
	return err == nil && ready > 0
}

// wakeHot shuts down the socket of a Conn that waits hot, so that its
// ppoll returns at once (shutdown(2) wakes the socket's waiters) rather
// than at the end of the window: the runtime's Close waits for a
// receive's callback to return. A wait that begins just after is seen
// late by at most its window.
func (c *Conn) wakeHot() {
	if c.hotNow.Load() {
		c.rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) })
	}
}
