package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// lockedBuffer is a bytes.Buffer safe for the flush timer's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAuditBuffer: an audit line waits in the buffer; it is written, in
// order, by the next line of the main logger, by a Sync (run's exit, an
// upgrade's execve), or by the flush timer once auditFlushInterval has
// passed, and not before. The clock is synctest's: the lines are looked at
// the moment each way has written them, never after a wait, so a way that
// did not write them cannot pass on another's (the timer's) behalf.
func TestAuditBuffer(t *testing.T) {
	tests := []struct {
		name  string
		flush func(log *zap.Logger)
		want  []string
	}{
		{"main line", func(log *zap.Logger) { log.Info("shutting down") }, []string{"request 1", "request 2", "shutting down"}},
		{"sync", func(log *zap.Logger) { log.Sync() }, []string{"request 1", "request 2"}},
		{"timer", func(*zap.Logger) {
			// Just before the interval nothing is written; at it, all.
			time.Sleep(auditFlushInterval - time.Nanosecond)
			synctest.Wait()
		}, []string{"request 1", "request 2"}},
	}
	// A refusal at warn is written at once, with the lines before it.
	t.Run("warn", func(t *testing.T) {
		var w lockedBuffer
		_, audit := newLogger("console", zapcore.InfoLevel, &w)
		audit.Info("request 1")
		audit.Warn("denied")
		if out := w.String(); !strings.Contains(out, "request 1") || !strings.Contains(out, "denied") {
			t.Fatalf("after a warn line the log holds %q, want both lines", out)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var w lockedBuffer
				log, audit := newLogger("console", zapcore.InfoLevel, &w)
				audit.Info("request 1")
				audit.Info("request 2")
				synctest.Wait()
				if out := w.String(); out != "" {
					t.Fatalf("before %s, the log holds %q, want nothing yet", tt.name, out)
				}
				tt.flush(log)
				if tt.name == "timer" {
					if out := w.String(); out != "" {
						t.Fatalf("%v after the lines, the log holds %q, want nothing yet", auditFlushInterval-time.Nanosecond, out)
					}
					time.Sleep(time.Nanosecond)
					synctest.Wait() // the timer's flush has run
				}
				out := w.String()
				last := -1
				for _, s := range tt.want {
					i := strings.Index(out, s)
					if i <= last {
						t.Fatalf("after %s, log %q: %q missing or out of order (want %q)", tt.name, out, s, tt.want)
					}
					last = i
				}
			})
		})
	}
}
