package holder

import (
	"errors"
	"fmt"
	"testing"

	"go.uber.org/zap/zapcore"

	"github.com/fdholder/fdholder/internal/proto"
)

func TestAuditLevel(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want zapcore.Level
	}{
		{"served", nil, zapcore.InfoLevel},
		{"get-or-create's first get", errNotHeld, zapcore.InfoLevel},
		{"store of a held name", fmt.Errorf("store: %w", proto.ErrExists), zapcore.InfoLevel},
		{"denied", proto.Errorf(proto.CodePermission, "permission denied"), zapcore.WarnLevel},
		{"malformed", proto.Errorf(proto.CodeBadRequest, "truncated"), zapcore.WarnLevel},
		{"not a socket", proto.Errorf(proto.CodeNotSocket, "a pipe"), zapcore.WarnLevel},
		{"limit", proto.Errorf(proto.CodeLimit, "too many entries"), zapcore.WarnLevel},
		{"holder failure", errors.New("boom"), zapcore.WarnLevel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auditLevel(tt.err); got != tt.want {
				t.Errorf("auditLevel(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
