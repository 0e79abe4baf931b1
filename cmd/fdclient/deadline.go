package main

import (
	"context"
	"time"
)

// untimed is ctx with a deadline that no timer enforces: Deadline reports
// it, Done and Err stay ctx's. It serves a request whose every wait honours
// the deadline itself: the client's blocking socket takes it as
// SO_SNDTIMEO and SO_RCVTIMEO and fails with context.DeadlineExceeded once
// it has passed. A timer (context.WithTimeout's) would start the runtime's
// netpoller, its epoll instance, eventfd and a thread waiting in
// epoll_pwait(2), in an fdclient exec that otherwise never needs it.
type untimed struct {
	context.Context
	deadline time.Time
}

func (c untimed) Deadline() (time.Time, bool) { return c.deadline, true }

// requestUntimed is request for a plain get: ctx with --timeout as a
// deadline no timer enforces (see untimed).
func (a *app) requestUntimed(ctx context.Context) context.Context {
	if a.timeout <= 0 {
		return ctx
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < a.timeout {
		return ctx
	}
	return untimed{ctx, time.Now().Add(a.timeout)}
}
