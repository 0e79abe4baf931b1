package main

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestConsoleEncoderAsZap: fdholderd's console encoder writes byte for byte
// what zap's console encoder writes with the same settings, for every kind
// of entry and field, and for fields added by With.
func TestConsoleEncoderAsZap(t *testing.T) {
	ec := encoderConfig("console")
	at := time.Date(2026, 11, 29, 18, 4, 5, 123456789, time.FixedZone("x", 3600))
	_, file, line, _ := runtime.Caller(0)
	caller := zapcore.NewEntryCaller(0, file, line, true)
	caller.Function = "main.TestConsoleEncoderAsZap"
	audit := []zap.Field{zap.String("op", "get"), zap.String("name", "web/a b\t\"c\"\n"), zap.String("result", "ok"),
		zap.Uint32("peer_uid", 1000), zap.Uint32("peer_gid", 1000), zap.Int32("peer_pid", 4242)}
	tests := []struct {
		name   string
		ent    zapcore.Entry
		with   []zap.Field
		fields []zap.Field
	}{
		{name: "audit line", ent: zapcore.Entry{Level: zapcore.InfoLevel, Time: at, Message: "request"}, fields: audit},
		{name: "refusal", ent: zapcore.Entry{Level: zapcore.WarnLevel, Time: at.UTC(), Message: "request"},
			fields: append(audit[:3:3], zap.Error(errors.New("denied: rule \"x\"")), zap.String("rule", "x"), zap.Int("suppressed", 3))},
		{name: "no fields", ent: zapcore.Entry{Level: zapcore.ErrorLevel, Time: at, Message: "shutting down"}},
		{name: "no time", ent: zapcore.Entry{Level: zapcore.DebugLevel, Message: "m"}, fields: audit[:1]},
		{name: "with", ent: zapcore.Entry{Level: zapcore.InfoLevel, Time: at, Message: "m"},
			with: []zap.Field{zap.String("socket", "/run/x"), zap.Namespace("ns")}, fields: []zap.Field{zap.Duration("idle_timeout", time.Minute), zap.Bool("b", true)}},
		{name: "with, plain fields", ent: zapcore.Entry{Level: zapcore.InfoLevel, Time: at, Message: "m"},
			with: []zap.Field{zap.String("socket", "/run/x")}, fields: audit},
		{name: "every plain type", ent: zapcore.Entry{Level: zapcore.WarnLevel, Time: at, Message: "m"},
			fields: []zap.Field{zap.Bool("t", true), zap.Bool("f", false), zap.Int64("i64", -1<<63), zap.Int32("i32", -1<<31),
				zap.Uint64("u64", 1<<64-1), zap.Uint32("u32", 1<<32-1), zap.Int("int", -5), zap.String("", ""),
				zap.String("k\x00\x1f\x7f\"\\", "é€😀 \xff\xfe\xc3 \r\n\t\b\u2028")}},
		{name: "with only", ent: zapcore.Entry{Level: zapcore.InfoLevel, Time: at, Message: "m"}, with: []zap.Field{zap.Strings("l", []string{"a", "b"})}},
		{name: "empty message", ent: zapcore.Entry{Level: zapcore.InfoLevel, Time: at}, fields: audit},
		{name: "name, caller, stack", ent: zapcore.Entry{Level: zapcore.ErrorLevel, Time: at, Message: "m", LoggerName: "holder",
			Caller: caller, Stack: "goroutine 1 [running]:\nmain.main()"}, fields: audit[:2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			zapEnc, ours := zapcore.NewConsoleEncoder(ec), newConsoleEncoder(ec)
			for _, f := range tt.with {
				f.AddTo(zapEnc)
				f.AddTo(ours)
			}
			// Twice each, and through clones, as a core uses them.
			for range 2 {
				sameLine(t, zapEnc.Clone(), ours.Clone(), tt.ent, tt.fields)
			}
		})
	}
}

// FuzzConsoleEncoder: for any key, string and integers, fdholderd's console
// encoder writes zap's bytes.
func FuzzConsoleEncoder(f *testing.F) {
	f.Add("name", "web/a", "request", int64(-3), uint64(7), true, int64(1796000000123456789), int16(60))
	f.Add("k\"\\", "\xff\x00\u2028\t", "", int64(0), uint64(1<<63), false, int64(-1), int16(-330))
	ec := encoderConfig("console")
	zapEnc, ours := zapcore.NewConsoleEncoder(ec), newConsoleEncoder(ec)
	f.Fuzz(func(t *testing.T, key, value, msg string, i int64, u uint64, b bool, nanos int64, zoneMin int16) {
		at := time.Unix(0, nanos).In(time.FixedZone("z", int(zoneMin)*60))
		ent := zapcore.Entry{Level: zapcore.InfoLevel, Time: at, Message: msg}
		fields := []zap.Field{zap.String(key, value), zap.Int64(key, i), zap.Uint64("u", u), zap.Bool(value, b),
			zap.Int32("i32", int32(i)), zap.Uint32("u32", uint32(u))}
		sameLine(t, zapEnc, ours, ent, fields)
	})
}

// sameLine checks that ours encodes ent and fields as zapEnc does.
func sameLine(t testing.TB, zapEnc, ours zapcore.Encoder, ent zapcore.Entry, fields []zap.Field) {
	t.Helper()
	want, err := zapEnc.EncodeEntry(ent, fields)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Free()
	got, err := ours.EncodeEntry(ent, fields)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Free()
	if got.String() != want.String() {
		t.Errorf("got  %q\nwant %q", got.String(), want.String())
	}
}
