package main

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/fdholder/fdholder/internal/holder"
)

func TestParseFlags(t *testing.T) {
	defaults := config{logFormat: "console", logLevel: zapcore.InfoLevel}
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr error // flag.ErrHelp or errUsage; nil for success
	}{
		{name: "defaults", args: nil, want: defaults},
		{name: "socket", args: []string{"--socket", "/run/x.sock"}, want: config{socket: "/run/x.sock", logFormat: "console", logLevel: zapcore.InfoLevel}},
		{name: "socket with =", args: []string{"--socket=/run/x.sock"}, want: config{socket: "/run/x.sock", logFormat: "console", logLevel: zapcore.InfoLevel}},
		{name: "single dash", args: []string{"-socket", "/s"}, want: config{socket: "/s", logFormat: "console", logLevel: zapcore.InfoLevel}},
		{name: "json", args: []string{"--log-format", "json"}, want: config{logFormat: "json", logLevel: zapcore.InfoLevel}},
		{name: "console", args: []string{"--log-format", "console"}, want: defaults},
		{name: "debug", args: []string{"--log-level", "debug"}, want: config{logFormat: "console", logLevel: zapcore.DebugLevel}},
		{name: "warn", args: []string{"--log-level", "warn"}, want: config{logFormat: "console", logLevel: zapcore.WarnLevel}},
		{name: "error", args: []string{"--log-level", "error"}, want: config{logFormat: "console", logLevel: zapcore.ErrorLevel}},
		{name: "last wins", args: []string{"--log-level", "debug", "--log-level", "warn"}, want: config{logFormat: "console", logLevel: zapcore.WarnLevel}},
		{name: "all", args: []string{"--socket", "/s", "--log-format", "json", "--log-level", "error"}, want: config{socket: "/s", logFormat: "json", logLevel: zapcore.ErrorLevel}},
		{name: "check", args: []string{"--check"}, want: config{logFormat: "console", logLevel: zapcore.InfoLevel, check: true}},
		{name: "version", args: []string{"--version"}, want: config{logFormat: "console", logLevel: zapcore.InfoLevel, version: true}},
		{name: "policy", args: []string{"--policy", "/etc/fdholder/policy.toml"}, want: config{logFormat: "console", logLevel: zapcore.InfoLevel, policy: "/etc/fdholder/policy.toml"}},
		{name: "socket mode and group", args: []string{"--socket-mode", "0660", "--socket-group", "web"}, want: config{logFormat: "console", logLevel: zapcore.InfoLevel, socketMode: 0o660, socketGroup: "web"}},
		{name: "socket mode without leading zero", args: []string{"--socket-mode", "666"}, want: config{logFormat: "console", logLevel: zapcore.InfoLevel, socketMode: 0o666}},
		{name: "limits", args: []string{"--max-conns", "10", "--max-conns-per-uid", "3", "--max-entries", "100000", "--max-entries-per-uid", "5", "--idle-timeout", "30s", "--request-timeout", "2s", "--fd-reserve", "16"},
			want: config{logFormat: "console", logLevel: zapcore.InfoLevel, limits: holder.Limits{MaxConns: 10, MaxConnsPerUID: 3, MaxEntries: 100000, MaxEntriesPerUID: 5, IdleTimeout: 30 * time.Second, RequestTimeout: 2 * time.Second, FDReserve: 16}}},
		{name: "zero turns limits off", args: []string{"--max-conns", "0", "--max-conns-per-uid", "0", "--max-entries", "0", "--max-entries-per-uid", "0", "--idle-timeout", "0", "--request-timeout", "0s", "--fd-reserve", "0"},
			want: config{logFormat: "console", logLevel: zapcore.InfoLevel, limits: holder.Limits{MaxConns: -1, MaxConnsPerUID: -1, MaxEntries: -1, MaxEntriesPerUID: -1, IdleTimeout: -1, RequestTimeout: -1, FDReserve: -1}}},
		{name: "socket mode not octal", args: []string{"--socket-mode", "0690"}, wantErr: errUsage},
		{name: "socket mode too wide", args: []string{"--socket-mode", "04660"}, wantErr: errUsage},
		{name: "socket mode zero", args: []string{"--socket-mode", "0"}, wantErr: errUsage},
		{name: "empty socket group", args: []string{"--socket-group", ""}, wantErr: errUsage},
		{name: "negative count", args: []string{"--max-conns", "-1"}, wantErr: errUsage},
		{name: "count not a number", args: []string{"--max-entries", "lots"}, wantErr: errUsage},
		{name: "duration without unit", args: []string{"--idle-timeout", "30"}, wantErr: errUsage},
		{name: "negative duration", args: []string{"--request-timeout", "-1s"}, wantErr: errUsage},
		{name: "help", args: []string{"--help"}, wantErr: flag.ErrHelp},
		{name: "h", args: []string{"-h"}, wantErr: flag.ErrHelp},
		{name: "unknown format", args: []string{"--log-format", "xml"}, wantErr: errUsage},
		{name: "level fatal", args: []string{"--log-level", "fatal"}, wantErr: errUsage},
		{name: "level upper case", args: []string{"--log-level", "INFO"}, wantErr: errUsage},
		{name: "empty socket", args: []string{"--socket", ""}, wantErr: errUsage},
		{name: "socket without value", args: []string{"--socket"}, wantErr: errUsage},
		{name: "unknown flag", args: []string{"--sock", "/s"}, wantErr: errUsage},
		{name: "argument", args: []string{"/run/x.sock"}, wantErr: errUsage},
		{name: "argument after flags", args: []string{"--log-level", "info", "extra"}, wantErr: errUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("parseFlags(%q) error = %v, want %v", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			if got != tt.want {
				t.Errorf("parseFlags(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

// TestUsage runs the binary as a user would.
func TestUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string // substrings
		wantStderr []string
	}{
		{
			name:     "help",
			args:     []string{"--help"},
			wantCode: 0,
			wantStdout: []string{
				"Usage: fdholderd [--socket PATH] [--socket-mode MODE] [--socket-group GROUP]",
				"--policy FILE", "SIGHUP", "--max-conns N", "--max-conns-per-uid N", "--max-entries N", "--max-entries-per-uid N",
				"--idle-timeout DUR", "--request-timeout DUR", "--fd-reserve N", "RLIMIT_NOFILE",
				"--socket PATH", "--log-format", "--log-level", "debug, info (the default), warn or error",
				"systemd socket activation", "$FDHOLDER_SOCKET", "/run/fdholder/fdholder.sock",
				"$XDG_RUNTIME_DIR/fdholder/fdholder.sock", "fdholder-UID/fdholder.sock",
				"SIGTERM, SIGINT", "NOTIFY_SOCKET", "LISTEN_FDS", "Exit status",
			},
		},
		{name: "short help", args: []string{"-h"}, wantCode: 0, wantStdout: []string{"Usage: fdholderd"}},
		{
			name: "bad format", args: []string{"--log-format", "xml"}, wantCode: 2,
			wantStderr: []string{"fdholderd: ", `"xml" is not console or json`, "fdholderd --help"},
		},
		{
			name: "argument", args: []string{"serve"}, wantCode: 2,
			wantStderr: []string{`fdholderd: usage error: unexpected argument "serve"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runOnce(t, nil, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			for _, s := range tt.wantStdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tt.wantCode == 0 && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			if tt.wantCode != 0 && stdout != "" {
				t.Errorf("stdout = %q, want nothing on a usage error", stdout)
			}
		})
	}
}
