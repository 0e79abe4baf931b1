package holder

// This file writes the audit line of each request; auditlimit.go
// rate-limits the refusals of unprivileged peers.

import (
	"errors"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fdholder/fdholder/internal/proto"
)

// auditLevel is info for a request served or refused in the ordinary course
// of things (a get-or-create's first get finds nothing; a store without
// replace finds the name held), and warn for anything an operator should
// look at: denials, malformed input, limits, holder failures.
func auditLevel(err error) zapcore.Level {
	switch proto.CodeOf(err) {
	case proto.CodeOK, proto.CodeNotFound, proto.CodeExists:
		return zapcore.InfoLevel
	}
	return zapcore.WarnLevel
}

// audit writes the audit line of one request; the refusals of an
// unprivileged peer are rate-limited per uid (auditlimit.go).
func (c *conn) audit(op proto.Op, name string, err error) {
	if c.s.reqs != nil {
		c.op, c.code, c.audited = op, proto.CodeOf(err), true
	}
	level := auditLevel(err)
	ce := c.s.log.Check(level, "request")
	if ce == nil {
		return
	}
	suppressed := 0
	if err != nil && !c.privileged {
		var ok bool
		if ok, suppressed = c.s.refusals.allow(c.peer.UID); !ok {
			return
		}
	}
	result := "ok"
	if err != nil {
		result = resultOf(err)
	}
	fields := append(c.fields[:0], zap.String("op", op.String()))
	if name != "" {
		fields = append(fields, zap.String("name", name))
	}
	fields = append(fields, zap.String("result", result))
	if err != nil {
		fields = append(fields, zap.Error(err))
		var de *deniedError
		if errors.As(err, &de) {
			fields = append(fields, zap.String("rule", de.rule))
		}
	}
	fields = c.peerFields(fields...) // appends in place: c.fields has room
	if suppressed > 0 {
		fields = append(fields, zap.Int("suppressed", suppressed))
	}
	ce.Write(fields...)
	clear(fields) // let go of err until the next line
}

// resultOf is the audit's result for a request that failed with err.
func resultOf(err error) string {
	var u *undelivered
	if errors.As(err, &u) {
		return "not delivered"
	}
	return proto.CodeOf(err).String()
}

// peerFields appends the connection's peer to a log line's fields.
func (c *conn) peerFields(fields ...zap.Field) []zap.Field { return appendPeer(fields, &c.peer) }

// appendPeer appends the fields that name peer p to a log line's fields.
func appendPeer(fields []zap.Field, p *Peer) []zap.Field {
	return append(fields,
		zap.Uint32("peer_uid", p.UID),
		zap.Uint32("peer_gid", p.GID),
		zap.Int32("peer_pid", p.PID))
}
