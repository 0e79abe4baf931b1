package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/fdholder/fdholder/internal/holder"
)

// config is the parsed command line.
type config struct {
	socket    string // from --socket; empty: fdholder.SocketPath()
	logFormat string // console or json
	logLevel  zapcore.Level
	check     bool // --check: validate everything a start would, bind nothing (check.go)
	version   bool // --version: print the version and exit 0

	policy      string      // from --policy; empty: root and the holder's uid only
	socketMode  os.FileMode // from --socket-mode; 0: 0600
	socketGroup string      // from --socket-group, a name or a gid; empty: the holder's group
	// limits from the limit flags: a zero field is the default, a
	// negative one turns the limit off (the flags take 0 for that).
	limits holder.Limits

	metricsAddress string // from --metrics-address; empty: no metrics
	// metricsMaxListeners from --metrics-max-listeners: 0 is the default,
	// negative none (the flag takes 0 for that), as metrics.Options has it.
	metricsMaxListeners int
}

// errUsage marks a command line that cannot be run (exit status 2).
var errUsage = errors.New("usage error")

const usage = `Usage: fdholderd [--socket PATH] [--socket-mode MODE] [--socket-group GROUP]
                 [--policy FILE] [LIMITS] [--log-format console|json] [--log-level LEVEL]
                 [--metrics-address ADDRESS [--metrics-max-listeners N]]
       fdholderd --check [FLAGS] | --version | --help

fdholderd holds sockets (listeners and others) on behalf of services, so that
a service can restart, crash or be redeployed without refusing a connection:
the kernel keeps queueing connections on the held socket meanwhile. Services
talk to it with fdclient or the Go package github.com/fdholder/fdholder.

Options:
  --socket PATH         the control socket to create (see "Socket path")
  --socket-mode MODE    the socket file's mode, in octal (default 0600): who
                        may connect at all. 0660 with --socket-group lets a
                        group connect; what it may then do is the policy's
  --socket-group GROUP  the socket file's group, a name or a number
  --policy FILE         the access policy (TOML; docs/security.md).
                        Without it root and fdholderd's own uid may do
                        everything and every other uid nothing. A bad file
                        stops start-up with the line at fault; SIGHUP reloads
  --log-format FORMAT   console (human-readable, the default) or json
  --log-level LEVEL     debug, info (the default), warn or error
  --check               check everything a start with the other flags would,
                        without binding: the flags, the policy file (the
                        FILE:LINE at fault), --socket-group, the socket path
                        and its directory (or the one it would be created
                        in). Print how many rules the policy has, then
                        "fdholderd: ok", and exit 0; or each problem on a
                        line "fdholderd: check: ..." and exit 1. An upgrade
                        runs the new binary so, with the running holder's
                        flags, before executing it
  --metrics-address ADDRESS
                        serve Prometheus metrics at http://ADDRESS/metrics:
                        a TCP HOST:PORT (such as 127.0.0.1:9727) or
                        unix:PATH. Off by default. The metrics are listed
                        in docs/operations.md; anyone who can connect can
                        read them (entry names, queues): bind to loopback
  --metrics-max-listeners N
                        per-listener queue series for at most the first N
                        held TCP listeners by name (default 1000; 0: none)
  --version             print "fdholderd VERSION" and exit 0
  -h, --help            print this help and exit

Limits (0 turns a limit off; each refusal is logged and answered with
"limit reached", and fdclient exits 1):
  --max-conns N             connections served at once (default 1024); one
                            more gets "limit reached" to its first request
  --max-conns-per-uid N     connections served at once for one uid other
                            than root and fdholderd's own (default 64)
  --max-entries N           entries held in total (default 1048576)
  --max-entries-per-uid N   entries held for one uid other than root and
                            fdholderd's own (default 4096)
  --idle-timeout DUR        close a connection idle this long (default 5m)
  --request-timeout DUR     close a connection whose client does not read
                            its reply within DUR (default 10s)
  --fd-reserve N            descriptors kept free under RLIMIT_NOFILE: a
                            store that would use them is refused (default 64)
  Requests are at most 1024 bytes (a load, 64 KiB), and a store carries
  exactly one descriptor; fdholderd raises its RLIMIT_NOFILE soft limit to the hard
  limit at start.

Socket path, the first that applies:
  1. systemd socket activation (LISTEN_FDS): every listening AF_UNIX
     SOCK_SEQPACKET socket passed is served, and no socket is bound
  2. --socket PATH
  3. $FDHOLDER_SOCKET
  4. /run/fdholder/fdholder.sock when running as root
  5. $XDG_RUNTIME_DIR/fdholder/fdholder.sock
  6. $TMPDIR/fdholder-UID/fdholder.sock ($TMPDIR defaults to /tmp)

The socket's directory is created (mode 0755) if missing. It must be owned by
root or fdholderd's uid and writable by nobody else, and the directories
above it owned by root or that uid and writable by others only with the
sticky bit (as /tmp is); otherwise fdholderd refuses to start, naming the
directory and the fix. The socket is an AF_UNIX
SOCK_SEQPACKET socket in mode 0600 (see --socket-mode and --socket-group),
with that mode and group from its first moment. fdholderd refuses to start
if a holder already serves on the path, or if the path exists and is not a
socket; a stale socket file (nobody listening) is replaced. On exit the socket file is
removed, unless another holder has replaced it since or systemd created it.

Signals:
  SIGTERM, SIGINT   stop accepting, let the requests in flight finish (at
                    most 10s), close every held socket, and exit 0. A second
                    signal cuts the wait short and exits 1.
  SIGHUP            reload --policy FILE; a file that does not load is
                    logged and the policy in force is kept
  SIGUSR2           upgrade in place: run the binary at fdholderd's own path
                    with --check, then stop accepting, let the requests in
                    flight finish, close the open connections (clients
                    reconnect), and execute it in the same process (same
                    pid), passing the control socket and every held entry
                    with its metadata. Connections made meanwhile wait in
                    the socket's queue. If the check or the exec fails,
                    fdholderd logs why and keeps serving with every entry.
                    No signal during an upgrade kills the holder: SIGTERM
                    or SIGINT before the exec stops it gracefully instead;
                    across the exec all four are ignored until the new
                    image catches them (docs/operations.md)

Environment:
  FDHOLDER_SOCKET   the socket path when --socket is not given
  XDG_RUNTIME_DIR   the base of the default socket path when not root
  TMPDIR            the base of the last-resort socket path
  LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES
                    descriptors passed by systemd (sd_listen_fds(3)): the
                    activated control socket (FileDescriptorName=control, or
                    any listening AF_UNIX SOCK_SEQPACKET socket) and the
                    entries kept in the file descriptor store, which are
                    held again with their metadata before READY=1; other
                    descriptors passed are closed and removed from the store
  NOTIFY_SOCKET     where to send READY=1, STATUS= (the number of held
                    entries), STOPPING=1 and WATCHDOG=1 (sd_notify(3)), and
                    a copy of every entry (FDSTORE=1, FDSTOREREMOVE=1), so
                    that the entries survive a crash or restart of
                    fdholderd when the unit sets FileDescriptorStoreMax=
  WATCHDOG_USEC     WATCHDOG=1 is sent at half this interval
  FDHOLDER_HANDOFF_FD
                    set by an upgrade for the new binary; not for users

Logging goes to stderr: a line per request (op, name, peer_uid, peer_gid,
peer_pid, result, error, and on a denial the rule that decided) and lines
for start-up, reloads, limits hit and shutdown. Refusal lines of a uid
other than root and fdholderd's own are limited to 100 at once and 10 a
second per uid; the next line says how many were dropped (suppressed).
Request lines at info are buffered and written within 50 ms (at once on
any warn line, on exit and before an upgrade): a kill -9 can lose the last
50 ms of them. An error that
stops fdholderd is printed as one line "fdholderd: ..." on stderr.

Exit status: 0 after a clean shutdown, 1 on failure, 2 on a usage error.
`

// parseFlags parses the arguments after the program name. It returns
// flag.ErrHelp for -h/--help, and an error wrapping errUsage for anything
// it cannot run.
func parseFlags(args []string) (config, error) {
	cfg := config{logFormat: "console", logLevel: zapcore.InfoLevel}
	fs := newFlagSet(&cfg)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return cfg, nil
}

// newFlagSet returns the flag set that parses into cfg. It is silent: run
// prints the usage and the error itself.
func newFlagSet(cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet("fdholderd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.Func("socket", "", func(s string) error {
		if s == "" {
			return errors.New("empty path")
		}
		cfg.socket = s
		return nil
	})
	fs.Func("log-format", "", func(s string) error {
		switch s {
		case "console", "json":
			cfg.logFormat = s
			return nil
		}
		return fmt.Errorf("%q is not console or json", s)
	})
	fs.BoolVar(&cfg.check, "check", false, "")
	fs.BoolVar(&cfg.version, "version", false, "")
	fs.Func("log-level", "", func(s string) error {
		switch s {
		case "debug", "info", "warn", "error":
			return cfg.logLevel.Set(s)
		}
		return fmt.Errorf("%q is not debug, info, warn or error", s)
	})
	fs.StringVar(&cfg.policy, "policy", "", "")
	fs.Func("socket-mode", "", func(s string) error {
		m, err := strconv.ParseUint(s, 8, 32)
		if err != nil || m == 0 || m > 0o777 {
			return fmt.Errorf("%q is not an octal file mode between 0001 and 0777", s)
		}
		cfg.socketMode = os.FileMode(m)
		return nil
	})
	fs.Func("socket-group", "", func(s string) error {
		if s == "" {
			return errors.New("empty group")
		}
		cfg.socketGroup = s
		return nil
	})
	count := func(name string, v *int) {
		fs.Func(name, "", func(s string) error {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return fmt.Errorf("%q is not a count (0 or more)", s)
			}
			*v = n
			if n == 0 {
				*v = -1 // off
			}
			return nil
		})
	}
	duration := func(name string, v *time.Duration) {
		fs.Func(name, "", func(s string) error {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				return fmt.Errorf("%q is not a duration (such as 30s or 5m)", s)
			}
			*v = d
			if d == 0 {
				*v = -1 // off
			}
			return nil
		})
	}
	count("max-conns", &cfg.limits.MaxConns)
	count("max-conns-per-uid", &cfg.limits.MaxConnsPerUID)
	count("max-entries", &cfg.limits.MaxEntries)
	count("max-entries-per-uid", &cfg.limits.MaxEntriesPerUID)
	count("fd-reserve", &cfg.limits.FDReserve)
	fs.Func("metrics-address", "", func(s string) error {
		path, isUnix := strings.CutPrefix(s, "unix:")
		if isUnix && path == "" {
			return errors.New(`"unix:" without a path`)
		}
		if !isUnix {
			if _, _, err := net.SplitHostPort(s); err != nil {
				return fmt.Errorf("%q is not HOST:PORT or unix:PATH", s)
			}
		}
		cfg.metricsAddress = s
		return nil
	})
	count("metrics-max-listeners", &cfg.metricsMaxListeners)
	duration("idle-timeout", &cfg.limits.IdleTimeout)
	duration("request-timeout", &cfg.limits.RequestTimeout)
	return fs
}
