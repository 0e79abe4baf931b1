package main

import (
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// iso8601 is zapcore.ISO8601TimeEncoder's layout.
const iso8601 = "2006-01-02T15:04:05.000Z0700"

// consoleEncoder writes exactly what zap's console encoder writes with
// fdholderd's settings (newLogger: ISO 8601 time, capital level, short
// caller, tab separators), cheaper: zap's formats the time into a new
// string and prints the time and the level through fmt.Fprint of an
// interface (3 allocations), then encodes the fields through a cloned JSON
// encoder, which every request pays at the default level for its audit
// line. This one appends the entry straight into the line, and the fields
// too when they are all strings, integers and booleans (the audit line of
// a request served); others go through zap's console encoder.
// TestConsoleEncoderAsZap and FuzzConsoleEncoder hold it to zap's bytes.
type consoleEncoder struct {
	// Encoder is zap's console encoder without the entry's keys: it
	// encodes the fields (and those added by With) as zap's does.
	zapcore.Encoder
	pool buffer.Pool
	// second is the last second appendTime formatted, shared by clones.
	second *atomic.Pointer[stamp]
	// with: a clone, which a core makes only for With: it may hold
	// fields of its own, and so always goes through Encoder.
	with bool
}

func newConsoleEncoder(ec zapcore.EncoderConfig) zapcore.Encoder {
	ec.TimeKey, ec.LevelKey, ec.NameKey, ec.CallerKey = "", "", "", ""
	ec.FunctionKey, ec.MessageKey, ec.StacktraceKey = "", "", ""
	return &consoleEncoder{Encoder: zapcore.NewConsoleEncoder(ec), pool: buffer.NewPool(), second: new(atomic.Pointer[stamp])}
}

func (e *consoleEncoder) Clone() zapcore.Encoder {
	return &consoleEncoder{Encoder: e.Encoder.Clone(), pool: e.pool, second: e.second, with: true}
}

func (e *consoleEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	// zap's fields first, as "{...}\n" ("\n" without any), unless they are
	// all of a type appendFields encodes.
	var ctx *buffer.Buffer
	if e.with || !plainFields(fields) {
		var err error
		if ctx, err = e.Encoder.EncodeEntry(zapcore.Entry{}, fields); err != nil {
			return nil, err
		}
		defer ctx.Free()
	}
	line := e.pool.Get()
	sep := func() {
		if line.Len() > 0 {
			line.AppendByte('\t')
		}
	}
	if !ent.Time.IsZero() {
		e.appendTime(line, ent.Time)
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
	switch {
	case ctx == nil:
		if len(fields) > 0 {
			sep()
			appendFields(line, fields)
		}
	case ctx.Len() > 1:
		sep()
		line.Write(ctx.Bytes()[:ctx.Len()-1])
	}
	if ent.Stack != "" {
		line.AppendByte('\n')
		line.AppendString(ent.Stack)
	}
	line.AppendByte('\n')
	return line, nil
}

// stamp is one second of time stamps in the iso8601 layout, formatted
// once: what comes before the milliseconds and what comes after.
type stamp struct {
	unix         int64
	loc          *time.Location
	before, zone string
}

// appendTime appends t in the iso8601 layout, formatting its date, time of
// day and zone once a second: of a line, formatting them every time was
// about a third.
func (e *consoleEncoder) appendTime(line *buffer.Buffer, t time.Time) {
	st := e.second.Load()
	if st == nil || st.unix != t.Unix() || st.loc != t.Location() {
		s := t.Format(iso8601)
		dot := strings.LastIndexByte(s, '.') // the zone has none
		st = &stamp{unix: t.Unix(), loc: t.Location(), before: s[:dot+1], zone: s[dot+4:]}
		e.second.Store(st)
	}
	line.AppendString(st.before)
	ms := t.Nanosecond() / 1e6 // truncated, as the layout's .000 is
	line.AppendByte(byte('0' + ms/100))
	line.AppendByte(byte('0' + ms/10%10))
	line.AppendByte(byte('0' + ms%10))
	line.AppendString(st.zone)
}

// plainFields reports whether appendFields encodes every field of fields.
func plainFields(fields []zapcore.Field) bool {
	for i := range fields {
		switch fields[i].Type {
		case zapcore.StringType, zapcore.BoolType, zapcore.Int64Type, zapcore.Int32Type,
			zapcore.Uint64Type, zapcore.Uint32Type:
		default:
			return false
		}
	}
	return true
}

// appendFields appends fields (plainFields) as zap's console encoder does:
// {"key": value, ...}, strings escaped as zap's JSON encoder escapes them.
func appendFields(line *buffer.Buffer, fields []zapcore.Field) {
	line.AppendByte('{')
	for i := range fields {
		f := &fields[i]
		if i > 0 {
			line.AppendString(", ")
		}
		line.AppendByte('"')
		appendEscaped(line, f.Key)
		line.AppendString(`": `)
		switch f.Type {
		case zapcore.StringType:
			line.AppendByte('"')
			appendEscaped(line, f.String)
			line.AppendByte('"')
		case zapcore.BoolType:
			line.AppendBool(f.Integer == 1)
		case zapcore.Int64Type:
			line.AppendInt(f.Integer)
		case zapcore.Int32Type:
			line.AppendInt(int64(int32(f.Integer)))
		case zapcore.Uint64Type:
			line.AppendUint(uint64(f.Integer))
		case zapcore.Uint32Type:
			line.AppendUint(uint64(uint32(f.Integer)))
		}
	}
	line.AppendByte('}')
}

// appendEscaped appends s escaped as zap's JSON encoder does
// (safeAppendStringLike in zapcore/json_encoder.go): \\, \", \n, \r, \t,
// other bytes below 0x20 as \u00XX, invalid UTF-8 as \ufffd.
func appendEscaped(b *buffer.Buffer, s string) {
	const hex = "0123456789abcdef"
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainByte[c] {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			if r, size := utf8.DecodeRuneInString(s[i:]); r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b.AppendString(s[last:i])
			b.AppendString(`\ufffd`)
			i++
			last = i
			continue
		}
		b.AppendString(s[last:i])
		switch c {
		case '\\', '"':
			b.AppendByte('\\')
			b.AppendByte(c)
		case '\n':
			b.AppendString(`\n`)
		case '\r':
			b.AppendString(`\r`)
		case '\t':
			b.AppendString(`\t`)
		default:
			b.AppendString(`\u00`)
			b.AppendByte(hex[c>>4])
			b.AppendByte(hex[c&0xF])
		}
		i++
		last = i
	}
	b.AppendString(s[last:])
}

// plainByte[c] is whether appendEscaped copies the byte c as it is: ASCII
// from 0x20 but '\\' and '"'. One look-up a byte in the common case.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '\\' && c != '"'
	}
	return t
}()
