package main

import (
	"io"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkAuditLine writes the audit line of a get through fdholderd's
// audit logger (buffered, into io.Discard): what each request pays at the
// default level.
func BenchmarkAuditLine(b *testing.B) {
	for _, format := range []string{"console", "json"} {
		b.Run(format, func(b *testing.B) {
			_, audit := newLogger(format, zapcore.InfoLevel, io.Discard)
			var fields [8]zap.Field
			b.ReportAllocs()
			for b.Loop() {
				if ce := audit.Check(zapcore.InfoLevel, "request"); ce != nil {
					f := append(fields[:0], zap.String("op", "get"), zap.String("name", "bench"), zap.String("result", "ok"),
						zap.Uint32("peer_uid", 0), zap.Uint32("peer_gid", 0), zap.Int32("peer_pid", 12345))
					ce.Write(f...)
				}
			}
		})
	}
}

// BenchmarkConsoleEncoder encodes the audit line of a get with zap's
// console encoder and with fdholderd's (console.go), side by side.
func BenchmarkConsoleEncoder(b *testing.B) {
	ec := encoderConfig("console")
	ent := zapcore.Entry{Level: zapcore.InfoLevel, Time: time.Now(), Message: "request"}
	fields := []zap.Field{zap.String("op", "get"), zap.String("name", "bench"), zap.String("result", "ok"),
		zap.Uint32("peer_uid", 0), zap.Uint32("peer_gid", 0), zap.Int32("peer_pid", 12345)}
	for _, enc := range []struct {
		name string
		enc  zapcore.Encoder
	}{{"zap", zapcore.NewConsoleEncoder(ec)}, {"fdholderd", newConsoleEncoder(ec)}} {
		b.Run(enc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf, _ := enc.enc.EncodeEntry(ent, fields)
				buf.Free()
			}
		})
	}
}
