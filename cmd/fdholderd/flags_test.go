package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
		{name: "metrics tcp", args: []string{"--metrics-address", "127.0.0.1:9727", "--metrics-max-listeners", "50"},
			want: config{logFormat: "console", logLevel: zapcore.InfoLevel, metricsAddress: "127.0.0.1:9727", metricsMaxListeners: 50}},
		{name: "metrics unix, no listener series", args: []string{"--metrics-address", "unix:/run/fdholder/metrics.sock", "--metrics-max-listeners", "0"},
			want: config{logFormat: "console", logLevel: zapcore.InfoLevel, metricsAddress: "unix:/run/fdholder/metrics.sock", metricsMaxListeners: -1}},
		{name: "metrics address without port", args: []string{"--metrics-address", "127.0.0.1"}, wantErr: errUsage},
		{name: "metrics unix without path", args: []string{"--metrics-address", "unix:"}, wantErr: errUsage},
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

// TestCheckPolicy runs fdholderd --check --policy FILE as an operator
// would before a reload: it validates the file without starting.
func TestCheckPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.toml", "rule = [\n  {uid = 65534, ops = ['get'], names = ['pub/*']},\n  {uid = 65533, ops = ['list'], names = ['**']},\n]\n")
	one := write("one.toml", "\uFEFF[[rule]]\nuid = 65534\nops = ['get']\nnames = ['pub/*']\n")
	empty := write("empty.toml", "# nothing yet\n")
	bad := write("bad.toml", "[[rule]]\nuid = 65534\nops = [\n  'get',\n  'read',\n]\nnames = ['**']\n")
	tests := []struct {
		name       string
		policy     string
		wantCode   int
		wantStdout string // the whole of it
		wantStderr string
	}{
		{name: "no policy", wantStdout: "fdholderd: ok\n"},
		{name: "good", policy: good, wantStdout: "fdholderd: policy " + good + ": 2 rules\nfdholderd: ok\n"},
		{name: "one rule", policy: one, wantStdout: "fdholderd: policy " + one + ": 1 rule\nfdholderd: ok\n"},
		{name: "empty", policy: empty, wantStdout: "fdholderd: ok\n", wantStderr: fmt.Sprintf("fdholderd: warning: policy %s has no rules: only root and uid %d (fdholderd's) may use the holder\n", empty, os.Getuid())},
		{name: "bad", policy: bad, wantCode: 1, wantStderr: "fdholderd: check: policy " + bad + `:5: unknown op "read"; ops are store, get, take, delete, list and transfer` + "\n"},
		{name: "missing", policy: filepath.Join(dir, "none.toml"), wantCode: 1, wantStderr: "fdholderd: check: policy " + filepath.Join(dir, "none.toml") + ": open " + filepath.Join(dir, "none.toml") + ": no such file or directory\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--check"}
			if tt.policy != "" {
				args = append(args, "--policy", tt.policy)
			}
			code, stdout, stderr := runOnce(t, nil, args...)
			if code != tt.wantCode || stdout != tt.wantStdout || stderr != tt.wantStderr {
				t.Errorf("fdholderd %q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q",
					args, code, stdout, stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

// TestEveryFlagDocumented checks that each flag fdholderd defines has its
// own line in --help, and appears in the synopsis of doc.go and of the
// README, so that neither drifts from the code again.
func TestEveryFlagDocumented(t *testing.T) {
	docs := map[string]string{"--help": usage}
	for name, path := range map[string]string{"doc.go": "doc.go", "README.md": "../../README.md"} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		docs[name] = string(data)
	}
	n := 0
	newFlagSet(&config{}).VisitAll(func(f *flag.Flag) {
		n++
		t.Run(f.Name, func(t *testing.T) {
			line := regexp.MustCompile(`(?m)^  --` + regexp.QuoteMeta(f.Name) + `( |$)`)
			if !line.MatchString(usage) {
				t.Errorf("--help has no line for --%s", f.Name)
			}
			mention := regexp.MustCompile(`[[ ]--` + regexp.QuoteMeta(f.Name) + `[] \n]`)
			for _, doc := range []string{"doc.go", "README.md"} {
				if !mention.MatchString(docs[doc]) {
					t.Errorf("%s's synopsis lacks --%s", doc, f.Name)
				}
			}
		})
	})
	if n < 13 {
		t.Errorf("only %d flags defined; the flag set is not the one parseFlags uses", n)
	}
}
