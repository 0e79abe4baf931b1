package main

import (
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// iso8601 is zapcore.ISO8601TimeEncoder's layout.
const iso8601 = "2006-01-02T15:04:05.000Z0700"

// consoleEncoder writes exactly what zap's console encoder writes with
// fdholderd's settings (newLogger: ISO 8601 time, capital level, short
// caller, tab separators), at the cost of its JSON fields alone: zap's
// formats the time into a new string and prints the time and the level
// through fmt.Fprint of an interface, 3 allocations and about 40% of an
// audit line (BenchmarkAuditLine), which every request pays at the default
// level. TestConsoleEncoderAsZap holds it to zap's bytes.
type consoleEncoder struct {
	// Encoder is zap's console encoder without the entry's keys: it
	// encodes the fields (and those added by With) as zap's does.
	zapcore.Encoder
	pool buffer.Pool
}

func newConsoleEncoder(ec zapcore.EncoderConfig) zapcore.Encoder {
	ec.TimeKey, ec.LevelKey, ec.NameKey, ec.CallerKey = "", "", "", ""
	ec.FunctionKey, ec.MessageKey, ec.StacktraceKey = "", "", ""
	return &consoleEncoder{Encoder: zapcore.NewConsoleEncoder(ec), pool: buffer.NewPool()}
}

func (e *consoleEncoder) Clone() zapcore.Encoder {
	return &consoleEncoder{Encoder: e.Encoder.Clone(), pool: e.pool}
}

func (e *consoleEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	// The fields first, as "{...}\n" ("\n" without any).
	ctx, err := e.Encoder.EncodeEntry(zapcore.Entry{}, fields)
	if err != nil {
		return nil, err
	}
	defer ctx.Free()
	line := e.pool.Get()
	sep := func() {
		if line.Len() > 0 {
			line.AppendByte('\t')
		}
	}
	if !ent.Time.IsZero() {
		line.AppendTime(ent.Time, iso8601)
	}
	sep()
	line.AppendString(ent.Level.CapitalString())
	if ent.LoggerName != "" {
		sep()
		line.AppendString(ent.LoggerName)
	}
	if ent.Caller.Defined {
		sep()
		line.AppendString(ent.Caller.TrimmedPath()) // no function: the production config omits it
	}
	sep()
	line.AppendString(ent.Message)
	if b := ctx.Bytes(); len(b) > 1 {
		sep()
		line.Write(b[:len(b)-1])
	}
	if ent.Stack != "" {
		line.AppendByte('\n')
		line.AppendString(ent.Stack)
	}
	line.AppendByte('\n')
	return line, nil
}
