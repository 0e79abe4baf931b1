package main

import (
	"errors"
	"flag"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
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
				"Usage: fdholderd [--socket PATH] [--log-format console|json] [--log-level LEVEL]",
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
