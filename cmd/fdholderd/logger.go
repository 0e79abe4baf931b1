package main

import (
	"bufio"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// auditFlushInterval is how long an audit line may wait in the buffer
// before it is written: what a kill -9 can lose (docs/security.md).
const auditFlushInterval = 50 * time.Millisecond

// newLogger returns two loggers writing to w, human-readable ("console")
// or one JSON object per line ("json"), at level and above. Keys are
// stable: ts, level, msg, then the fields (op, name, peer_uid, peer_gid,
// peer_pid, result, error for the audit line of each request).
//
// log is for fdholderd's own lines (start-up, reloads, upgrades, shutdown):
// each is written at once. audit is for the holder's server, whose audit
// line per request would otherwise cost a write(2) per request under a
// lock: its lines below warn (requests served, and the ordinary refusals
// not found and already held) are buffered and written together within
// auditFlushInterval, or sooner when the buffer fills, when log writes a
// line (so the order stays the order of events) and when either logger is
// synced, which run does before it returns and the upgrade before its
// execve(2).
func newLogger(format string, level zapcore.Level, w io.Writer) (log, audit *zap.Logger) {
	var enc zapcore.Encoder
	if format == "json" {
		enc = zapcore.NewJSONEncoder(encoderConfig(format))
	} else {
		enc = newConsoleEncoder(encoderConfig(format))
	}
	out := &logOut{w: bufio.NewWriterSize(w, 64<<10), interval: auditFlushInterval}
	now := nowWriter{out}
	log = zap.New(&lineCore{enc: enc, out: out, level: level, bufferBelow: zapcore.DebugLevel}, zap.ErrorOutput(now))
	// Refusals an operator should see (denials, limits, malformed input)
	// are logged at warn: those lines are written at once, as log's are;
	// only info lines (requests served, not found, already held) wait in
	// the buffer (holder's auditLevel).
	audit = zap.New(&lineCore{enc: enc, out: out, level: level, bufferBelow: zapcore.WarnLevel}, zap.ErrorOutput(now))
	return log, audit
}

// lineCore is zapcore.NewCore's core over logOut, choosing by level between
// buffering a line and writing it at once: one core, where a zapcore.NewTee
// of a buffered and an immediate core had every request's Check ask both
// and add both to its entry (5% of the holder's time at 8 clients).
type lineCore struct {
	enc   zapcore.Encoder
	out   *logOut
	level zapcore.Level
	// bufferBelow: lines below this level are buffered, the others
	// written at once with every line buffered before them.
	bufferBelow zapcore.Level
}

func (c *lineCore) Enabled(l zapcore.Level) bool { return l >= c.level }

func (c *lineCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.enc = c.enc.Clone()
	for i := range fields {
		fields[i].AddTo(clone.enc)
	}
	return &clone
}

func (c *lineCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *lineCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(ent, fields)
	if err != nil {
		return err
	}
	defer buf.Free()
	if ent.Level < c.bufferBelow {
		_, err = c.out.Write(buf.Bytes())
	} else {
		_, err = nowWriter{c.out}.Write(buf.Bytes())
	}
	return err
}

func (c *lineCore) Sync() error { return c.out.Sync() }

// encoderConfig is the settings of the log's format, "console" or "json".
func encoderConfig(format string) zapcore.EncoderConfig {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	if format != "json" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
	}
	return ec
}

// logOut is the buffer both loggers share. Its Write buffers a line and
// makes sure a flush is due within interval; Sync flushes.
type logOut struct {
	mu       sync.Mutex
	w        *bufio.Writer
	interval time.Duration
	timer    *time.Timer // the flush that is due; nil when none is
}

func (o *logOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.w.Write(p)
	if o.timer == nil && o.w.Buffered() > 0 {
		o.timer = time.AfterFunc(o.interval, o.flushDue)
	}
	return n, err
}

// flushDue is the timer's flush.
func (o *logOut) flushDue() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.timer = nil
	o.w.Flush()
}

// Sync writes out every buffered line.
func (o *logOut) Sync() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.flushLocked()
}

func (o *logOut) flushLocked() error {
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	return o.w.Flush()
}

// nowWriter writes each line through the shared buffer and flushes it, with
// every audit line buffered before it, at once.
type nowWriter struct{ o *logOut }

func (n nowWriter) Write(p []byte) (int, error) {
	n.o.mu.Lock()
	defer n.o.mu.Unlock()
	k, err := n.o.w.Write(p)
	if ferr := n.o.flushLocked(); err == nil {
		err = ferr
	}
	return k, err
}

func (n nowWriter) Sync() error { return n.o.Sync() }
