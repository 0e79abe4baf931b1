package holder

import (
	"testing"
	"time"
)

func TestAuditLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newAuditLimiter(func() time.Time { return now })
	count := func(uid uint32, n int) (allowed, suppressed int) {
		for range n {
			ok, s := l.allow(uid)
			if ok {
				allowed++
			}
			suppressed += s
		}
		return allowed, suppressed
	}
	steps := []struct {
		name            string
		advance         time.Duration
		uid             uint32
		n               int
		allowed, report int // lines written; dropped lines they report
	}{
		{name: "a burst", uid: 7, n: 150, allowed: auditBurst},
		{name: "another uid has its own", uid: 8, n: 10, allowed: 10},
		{name: "one second refills auditRate", advance: time.Second, uid: 7, n: 20, allowed: auditRate, report: 50},
		{name: "a quiet minute refills the burst", advance: time.Minute, uid: 7, n: auditBurst + 1, allowed: auditBurst, report: 10},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			now = now.Add(st.advance)
			if a, r := count(st.uid, st.n); a != st.allowed || r != st.report {
				t.Errorf("%d lines of uid %d: %d written reporting %d dropped, want %d reporting %d", st.n, st.uid, a, r, st.allowed, st.report)
			}
		})
	}
	t.Run("buckets are bounded", func(t *testing.T) {
		for uid := range uint32(3 * auditUIDs) {
			l.allow(1000 + uid)
		}
		if len(l.byUID) > auditUIDs {
			t.Errorf("%d buckets kept, want at most %d", len(l.byUID), auditUIDs)
		}
	})
}
