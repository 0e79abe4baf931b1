package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/testutil"
)

// runInProcess calls run as main would, against a socket path where no
// holder listens: a usage error must be found before any dial, so it exits
// 2 and not 6.
func runInProcess(t testing.TB, args ...string) result {
	t.Helper()
	sock := filepath.Join(testutil.ShortDir(t), "none.sock")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"--socket", sock}, args...), &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func TestUsageErrors(t *testing.T) {
	long := strings.Repeat("a", 256)
	tests := []struct {
		name string
		args []string
		want string // in the first line of stderr
	}{
		{"no command", nil, "fdclient: no command given"},
		{"unknown command", []string{"frobnicate"}, `fdclient: unknown command "frobnicate"`},
		{"unknown global flag", []string{"--nope", "list"}, "flag provided but not defined: -nope"},
		{"bad timeout", []string{"--timeout", "soon", "list"}, `invalid value "soon" for flag -timeout`},
		{"negative timeout", []string{"--timeout", "-1s", "list"}, "negative --timeout -1s"},

		{"listen no args", []string{"listen"}, "listen: missing arguments: want NAME NETWORK:ADDRESS"},
		{"listen one arg", []string{"listen", "web"}, "listen: missing arguments"},
		{"listen three args", []string{"listen", "web", "tcp:127.0.0.1:0", "x"}, "listen: too many arguments"},
		{"listen flag after args", []string{"listen", "web", "tcp:127.0.0.1:0", "--replace"}, "listen: flag --replace after the arguments: flags go before NAME NETWORK:ADDRESS"},
		{"listen unknown flag", []string{"listen", "--force", "web", "tcp:127.0.0.1:0"}, "listen: flag provided but not defined: -force"},
		{"listen bad ttl", []string{"listen", "--ttl", "forever", "web", "tcp:127.0.0.1:0"}, `listen: invalid value "forever" for flag -ttl`},
		{"listen negative ttl", []string{"listen", "--ttl", "-5s", "web", "tcp:127.0.0.1:0"}, "listen: --ttl -5s is negative"},
		{"listen ttl past 2262", []string{"listen", "--ttl", "2200000h", "web", "tcp:127.0.0.1:0"}, "listen: --ttl 2200000h0m0s is too long: the entry would expire after 2262-04-11T23:47:16Z, the latest time the protocol carries; the longest ttl now is "},
		{"store ttl past 2262", []string{"store", "--ttl", "2200000h", "web"}, "store: --ttl 2200000h0m0s is too long"},
		{"list json and names", []string{"list", "--json", "--names"}, "list: --json and --names exclude each other"},
		{"listen invalid name colon", []string{"listen", "we:b", "tcp:127.0.0.1:0"}, `listen: invalid name "we:b"`},
		{"listen invalid name dash", []string{"listen", "--", "-web", "tcp:127.0.0.1:0"}, `listen: invalid name "-web"`},
		{"listen name too long", []string{"listen", long, "tcp:127.0.0.1:0"}, "listen: invalid name"},
		{"listen empty name", []string{"listen", "", "tcp:127.0.0.1:0"}, `listen: invalid name ""`},
		{"listen no colon", []string{"listen", "web", "8080"}, `listen: bad address "8080": want NETWORK:ADDRESS`},
		{"listen unknown network", []string{"listen", "web", "sctp:127.0.0.1:80"}, `unknown network "sctp"`},
		{"listen no port", []string{"listen", "web", "tcp:127.0.0.1"}, "tcp wants HOST:PORT"},
		{"listen bad port", []string{"listen", "web", "tcp:127.0.0.1:99999"}, `bad port "99999"`},
		{"listen empty unix path", []string{"listen", "web", "unix:"}, "unix wants a socket path or @name"},
		{"listen unix path too long", []string{"listen", "web", "unix:/" + strings.Repeat("p", 107)}, "the limit for a Unix socket address is 107"},

		{"store no name", []string{"store"}, "store: missing arguments: want NAME"},
		{"store two names", []string{"store", "a", "b"}, "store: too many arguments: want NAME"},
		{"store bad fd", []string{"store", "--fd", "three", "web"}, `store: invalid value "three" for flag -fd`},
		{"store negative fd", []string{"store", "--fd", "-1", "web"}, "store: negative --fd -1"},
		{"store invalid name", []string{"store", "web site"}, `store: invalid name "web site"`},
		{"store flag after name", []string{"store", "web", "--fd", "3"}, "store: flag --fd after the arguments"},

		{"exec nothing", []string{"exec"}, "exec: no -- before PROG"},
		{"exec no separator", []string{"exec", "web", "true"}, "exec: no -- before PROG"},
		{"exec no names", []string{"exec", "--", "true"}, "exec: no NAME before --"},
		{"exec no names after flag", []string{"exec", "--wait", "1s", "--", "true"}, "exec: no NAME before --"},
		{"exec no prog", []string{"exec", "web", "--"}, "exec: no PROG after --"},
		{"exec empty prog", []string{"exec", "web", "--", ""}, "exec: empty PROG"},
		{"exec same name twice", []string{"exec", "web", "admin", "web", "--", "true"}, `exec: name "web" given twice: each NAME is passed once`},
		{"exec same name twice with address", []string{"exec", "web", "web=tcp:127.0.0.1:0", "--", "true"}, `exec: name "web" given twice: each NAME is passed once`},
		{"exec invalid name", []string{"exec", "a:b", "--", "true"}, `exec: invalid name "a:b"`},
		{"exec bad address", []string{"exec", "web=tcp:nowhere", "--", "true"}, `exec: web: bad address "tcp:nowhere"`},
		{"exec bad wait", []string{"exec", "--wait", "a while", "web", "--", "true"}, `exec: invalid value "a while" for flag -wait`},
		{"exec negative wait", []string{"exec", "--wait", "-1s", "web", "--", "true"}, "exec: negative --wait -1s"},
		{"exec flag after name", []string{"exec", "web", "--wait", "1s", "--", "true"}, "exec: flag --wait after a NAME"},
		{"exec unknown vars", []string{"exec", "--vars", "systemd,apache", "web", "--", "true"}, `exec: --vars "systemd,apache": unknown form "apache"`},
		{"exec empty vars", []string{"exec", "--vars", "", "web", "--", "true"}, `exec: --vars "": unknown form ""`},
		{"exec names alike", []string{"exec", "--vars", "names", "web-a", "web.a", "--", "true"}, `exec: --vars names: "web-a" and "web.a" would both be FDHOLDER_FD_WEB_A`},

		{"list argument", []string{"list", "web"}, "list: too many arguments"},
		{"list unknown flag", []string{"list", "--yaml"}, "list: flag provided but not defined: -yaml"},

		{"delete no name", []string{"delete"}, "delete: missing arguments: want NAME"},
		{"delete two names", []string{"delete", "a", "b"}, "delete: too many arguments"},
		{"delete invalid name", []string{"delete", ".web"}, `delete: invalid name ".web"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runInProcess(t, tt.args...)
			if r.code != exitUsage {
				t.Fatalf("exit code %d, want %d (usage); %v", r.code, exitUsage, r)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			first, hint, _ := strings.Cut(r.stderr, "\n")
			if !strings.HasPrefix(first, "fdclient: ") || !strings.Contains(first, tt.want) {
				t.Errorf("stderr's first line %q, want \"fdclient: ...%s...\"", first, tt.want)
			}
			if !strings.HasPrefix(hint, "usage:") || !strings.Contains(hint, "fdclient --help") {
				t.Errorf("stderr %q: want a usage hint after the error", r.stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"-help"}, {"list", "--help"}, {"exec", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := runInProcess(t, args...)
			if r.code != exitOK || r.stderr != "" {
				t.Fatalf("%v, want exit 0 and nothing on stderr", r)
			}
			checkGolden(t, "help.golden", []byte(r.stdout))
		})
	}
	// The help text documents every exit code and every command.
	help := helpText()
	for code := exitOK; code <= exitUnreachable; code++ {
		if !strings.Contains(help, fmt.Sprintf("\n  %d  ", code)) {
			t.Errorf("help text does not list exit code %d", code)
		}
	}
	for _, s := range synopses {
		if !strings.Contains(help, "\n  "+s.cmd+" ") && !strings.Contains(help, "\n  "+s.cmd+"\n") {
			t.Errorf("help text does not describe %s", s.cmd)
		}
	}
}

// TestEveryFlagDocumented checks that each flag a command defines is named
// in that command's part of --help and shown in its synopsis, and each
// global flag in the usage lines and the global flags' part.
func TestEveryFlagDocumented(t *testing.T) {
	var sets []*flag.FlagSet
	orig := newFlagSet
	newFlagSet = func(cmd string) *flag.FlagSet {
		fs := orig(cmd)
		sets = append(sets, fs)
		return fs
	}
	t.Cleanup(func() { newFlagSet = orig })
	for _, s := range synopses {
		// Each command defines its flags before it parses --help.
		if _, _, err := parseArgs([]string{s.cmd, "--help"}); !errors.Is(err, errHelp) {
			t.Fatalf("%s --help: %v, want errHelp", s.cmd, err)
		}
	}
	help := helpText()
	section := func(cmd string) string {
		head := "\nGlobal flags:\n"
		if cmd != "" {
			head = "\n  " + cmd + " "
			if !strings.Contains(help, head) {
				head = "\n  " + cmd + "\n"
			}
		}
		i := strings.Index(help, head)
		if i < 0 {
			t.Fatalf("help has no part for %q", cmd)
		}
		rest := help[i+len(head):]
		if cmd != "" {
			rest = rest[strings.Index(rest, "\n"):] // not the command's synopsis
		}
		if j := strings.Index(rest, "\n\n"); j >= 0 {
			rest = rest[:j]
		}
		return rest
	}
	synopsis := func(cmd string) string {
		for _, s := range synopses {
			if s.cmd == cmd {
				return s.line
			}
		}
		usage := help[strings.Index(help, "\nUsage:\n"):] // the global synopses
		return usage[:strings.Index(usage, "\n\n")+1]
	}
	n := 0
	for _, fs := range sets {
		cmd := strings.TrimSpace(strings.TrimPrefix(fs.Name(), "fdclient"))
		fs.VisitAll(func(f *flag.Flag) {
			n++
			described := regexp.MustCompile(`(^|[^-\w])--` + regexp.QuoteMeta(f.Name) + `([^-\w]|$)`)
			if !described.MatchString(section(cmd)) {
				t.Errorf("--help does not describe %s --%s", cmd, f.Name)
			}
			shown := regexp.MustCompile(`[[ ]--` + regexp.QuoteMeta(f.Name) + `[] \n]`)
			if !shown.MatchString(synopsis(cmd)) {
				t.Errorf("the synopsis of %q lacks --%s", cmd, f.Name)
			}
		})
	}
	if n < 12 {
		t.Errorf("saw %d flags; newFlagSet is not what the commands use", n)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--socket", "/nowhere", "--version", "list"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := runInProcess(t, args...)
			if r.code != exitOK || r.stderr != "" || r.stdout != "fdclient devel\n" {
				t.Fatalf("%v, want exit 0 and \"fdclient devel\" (the version of a plain go build)", r)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"usage", usagef("list", "x"), exitUsage},
		{"invalid name from the holder", fmt.Errorf("store: %w", fdholder.ErrInvalidName), exitUsage},
		{"not found", fmt.Errorf("get %q: %w", "web", fdholder.ErrNotFound), exitNotFound},
		{"exists", fmt.Errorf("store: %w (use --replace)", fdholder.ErrExists), exitExists},
		{"permission", fmt.Errorf("take: %w", fdholder.ErrPermission), exitPermission},
		{"unreachable", fmt.Errorf("list: %w at /x: refused", fdholder.ErrUnreachable), exitUnreachable},
		{"not a socket", fmt.Errorf("store: %w", fdholder.ErrNotSocket), exitError},
		{"timeout", context.DeadlineExceeded, exitError},
		{"other", errors.New("bind: address already in use"), exitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestParseNetAddr(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		network string
		address string
		err     string // in the error, or "" for success
	}{
		{"tcp", "tcp:127.0.0.1:8080", "tcp", "127.0.0.1:8080", ""},
		{"tcp port 0", "tcp:127.0.0.1:0", "tcp", "127.0.0.1:0", ""},
		{"tcp any host", "tcp::8080", "tcp", ":8080", ""},
		{"tcp4", "tcp4:127.0.0.1:1", "tcp4", "127.0.0.1:1", ""},
		{"tcp6 splits at the first colon", "tcp6:[::1]:8080", "tcp6", "[::1]:8080", ""},
		{"tcp service name", "tcp:127.0.0.1:http", "tcp", "127.0.0.1:http", ""},
		{"udp", "udp:127.0.0.1:53", "udp", "127.0.0.1:53", ""},
		{"udp4", "udp4::53", "udp4", ":53", ""},
		{"udp6", "udp6:[::1]:0", "udp6", "[::1]:0", ""},
		{"unix", "unix:/run/app.sock", "unix", "/run/app.sock", ""},
		{"unix relative", "unix:app.sock", "unix", "app.sock", ""},
		{"unix colon in path", "unix:/tmp/a:b", "unix", "/tmp/a:b", ""},
		{"unix abstract", "unix:@app", "unix", "@app", ""},
		{"unixpacket", "unixpacket:/run/p.sock", "unixpacket", "/run/p.sock", ""},
		{"unixgram", "unixgram:/run/g.sock", "unixgram", "/run/g.sock", ""},
		{"unix longest path", "unix:/" + strings.Repeat("p", 106), "unix", "/" + strings.Repeat("p", 106), ""},

		{"no colon", "tcp", "", "", "want NETWORK:ADDRESS"},
		{"empty", "", "", "", "want NETWORK:ADDRESS"},
		{"empty network", ":8080", "", "", `unknown network ""`},
		{"unknown network", "ip:127.0.0.1", "", "", `unknown network "ip"`},
		{"upper case network", "TCP:127.0.0.1:80", "", "", `unknown network "TCP"`},
		{"tcp no port", "tcp:127.0.0.1", "", "", "wants HOST:PORT"},
		{"tcp empty", "tcp:", "", "", "wants HOST:PORT"},
		{"tcp empty port", "tcp:127.0.0.1:", "", "", "empty port (0 picks a free one)"},
		{"udp empty port", "udp::", "", "", "empty port (0 picks a free one)"},
		{"tcp port too large", "tcp:127.0.0.1:65536", "", "", `bad port "65536"`},
		{"tcp negative port", "tcp:127.0.0.1:-1", "", "", `bad port "-1"`},
		{"tcp unknown service", "tcp:127.0.0.1:no-such-service-x", "", "", `bad port "no-such-service-x"`},
		{"tcp6 unbracketed", "tcp6:::1:80", "", "", "wants HOST:PORT"},
		{"unix empty", "unix:", "", "", "wants a socket path or @name"},
		{"unix bare at", "unix:@", "", "", "wants a socket path or @name"},
		{"unix too long", "unix:/" + strings.Repeat("p", 107), "", "", "108 bytes, the limit for a Unix socket address is 107"},
		{"unix NUL", "unix:/a\x00b", "", "", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := parseNetAddr(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseNetAddr(%q) = %v, %v; want an error with %q", tt.in, a, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseNetAddr(%q): %v", tt.in, err)
			}
			if a.network != tt.network || a.address != tt.address {
				t.Errorf("parseNetAddr(%q) = %+v; want %s %s", tt.in, a, tt.network, tt.address)
			}
			if a.String() != tt.in {
				t.Errorf("String() = %q, want %q", a.String(), tt.in)
			}
		})
	}
}

func TestExecEnv(t *testing.T) {
	environ := []string{
		"PATH=/bin", "LISTEN_FDS=7", "HOME=/root", "LISTEN_PID=1", "LISTEN_FDNAMES=old",
		"LISTEN_PIDFDID=42", "LISTENER=keep", "XLISTEN_FDS=keep", "NGINX=9;", "NGINXX=keep",
		"FDHOLDER_FD_OLD=9", "FDHOLDER_SOCKET=/keep",
	}
	kept := []string{"PATH=/bin", "HOME=/root", "LISTENER=keep", "XLISTEN_FDS=keep", "NGINXX=keep", "FDHOLDER_SOCKET=/keep"}
	systemd := []string{"LISTEN_FDS=2", "LISTEN_PID=1234", "LISTEN_FDNAMES=web:api/v2"}
	tests := []struct {
		name string
		vars string
		want []string
	}{
		{"default", varsSystemd, systemd},
		{"nginx", "nginx", []string{"NGINX=3;4;"}},
		{"names", "names", []string{"FDHOLDER_FD_WEB=3", "FDHOLDER_FD_API_V2=4"}},
		{"all", "names,systemd,nginx", append(append(slices.Clone(systemd), "NGINX=3;4;"), "FDHOLDER_FD_WEB=3", "FDHOLDER_FD_API_V2=4")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parseVars(tt.vars)
			if err != nil {
				t.Fatal(err)
			}
			got := execEnv(environ, 1234, []string{"web", "api/v2"}, v)
			want := append(slices.Clone(kept), tt.want...)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("execEnv =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestFDVar(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "web", "FDHOLDER_FD_WEB"},
		{"every other byte", "a.b@c/d+e-f_g9", "FDHOLDER_FD_A_B_C_D_E_F_G9"},
		{"leading digit", "8080", "FDHOLDER_FD_8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fdVar(tt.in); got != tt.want {
				t.Errorf("fdVar(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", `list: holder unreachable`, `list: holder unreachable`},
		{"newlines", "bind: a\nb\tc", "bind: a b c"},
		{"no colon", "boom", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oneLine(tt.in); got != tt.want {
				t.Errorf("oneLine(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
