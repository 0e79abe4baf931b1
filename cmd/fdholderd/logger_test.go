package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
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
// upgrade's execve), or by the flush timer.
func TestAuditBuffer(t *testing.T) {
	tests := []struct {
		name  string
		flush func(log *zap.Logger)
		want  []string
	}{
		{"main line", func(log *zap.Logger) { log.Info("shutting down") }, []string{"request 1", "request 2", "shutting down"}},
		{"sync", func(log *zap.Logger) { log.Sync() }, []string{"request 1", "request 2"}},
		{"timer", func(*zap.Logger) {}, []string{"request 1", "request 2"}},
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
			var w lockedBuffer
			log, audit := newLogger("console", zapcore.InfoLevel, &w)
			audit.Info("request 1")
			audit.Info("request 2")
			tt.flush(log)
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(w.String(), tt.want[len(tt.want)-1]) {
				if time.Now().After(deadline) {
					t.Fatalf("after %s, the log holds %q, want %q", tt.name, w.String(), tt.want)
				}
				time.Sleep(auditFlushInterval / 5)
			}
			out := w.String()
			last := -1
			for _, s := range tt.want {
				i := strings.Index(out, s)
				if i <= last {
					t.Fatalf("log %q: %q missing or out of order (want %q)", out, s, tt.want)
				}
				last = i
			}
		})
	}
}
