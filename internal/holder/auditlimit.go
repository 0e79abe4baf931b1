package holder

import (
	"sync"
	"time"
)

// The audit lines of requests that unprivileged peers get refused (denied,
// malformed, over a limit, not found...) are rate-limited per uid: a uid
// granted nothing could otherwise write tens of thousands of lines a second,
// and a journal that rate-limits the whole unit would then drop the lines
// that matter (issue 8). Each uid has a bucket of auditBurst lines, refilled
// at auditRate a second; a line written after some were dropped says how
// many (field "suppressed"). Lines of served requests, of root and the
// holder's uid, and the holder's own lines are never dropped.
const (
	auditBurst = 100
	auditRate  = 10 // lines a second
	// auditUIDs bounds the buckets kept; full buckets (uids quiet for a
	// while) are dropped first.
	auditUIDs = 1024
)

// auditLimiter is the per-uid rate limit of refusal lines.
type auditLimiter struct {
	mu    sync.Mutex
	now   func() time.Time // time.Now; tests inject a clock
	byUID map[uint32]*auditBucket
}

type auditBucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

func newAuditLimiter(now func() time.Time) *auditLimiter {
	return &auditLimiter{now: now, byUID: make(map[uint32]*auditBucket)}
}

// allow reports whether a refusal line of uid may be written now, and if
// so how many were dropped since the last one written.
func (l *auditLimiter) allow(uid uint32) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.byUID[uid]
	if b == nil {
		if len(l.byUID) >= auditUIDs {
			l.sweep(now)
		}
		b = &auditBucket{tokens: auditBurst, last: now}
		l.byUID[uid] = b
	}
	b.tokens = min(auditBurst, b.tokens+now.Sub(b.last).Seconds()*auditRate)
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

// sweep drops the buckets that are full again, or, if none is, all of
// them: a flood from more than auditUIDs uids at once is limited per uid
// only as far as memory allows.
func (l *auditLimiter) sweep(now time.Time) {
	for uid, b := range l.byUID {
		if b.tokens+now.Sub(b.last).Seconds()*auditRate >= auditBurst {
			delete(l.byUID, uid)
		}
	}
	if len(l.byUID) >= auditUIDs {
		clear(l.byUID)
	}
}
