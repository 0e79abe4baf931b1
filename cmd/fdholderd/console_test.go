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
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeDuration = zapcore.StringDurationEncoder
	ec.EncodeLevel = zapcore.CapitalLevelEncoder
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
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
				want, err := zapEnc.Clone().EncodeEntry(tt.ent, tt.fields)
				if err != nil {
					t.Fatal(err)
				}
				got, err := ours.Clone().EncodeEntry(tt.ent, tt.fields)
				if err != nil {
					t.Fatal(err)
				}
				if got.String() != want.String() {
					t.Errorf("got  %q\nwant %q", got.String(), want.String())
				}
				got.Free()
				want.Free()
			}
		})
	}
}
