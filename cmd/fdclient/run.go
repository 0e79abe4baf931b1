package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/version"
)

// Exit codes, listed in the --help text (usage.go). Scripts rely on them:
// never renumber.
const (
	exitOK          = 0
	exitError       = 1 // any other error
	exitUsage       = 2 // bad flags or arguments, an invalid name or address
	exitNotFound    = 3 // fdholder.ErrNotFound; adopt: ErrNoProcess, ErrNoMatch
	exitExists      = 4 // fdholder.ErrExists
	exitPermission  = 5 // fdholder.ErrPermission; adopt: ErrPtraceDenied
	exitUnreachable = 6 // fdholder.ErrUnreachable
)

// defaultTimeout bounds each request to the holder unless --timeout says
// otherwise. A holder answers in microseconds; the limit is there so that a
// stuck holder cannot hang a deploy script.
const defaultTimeout = 10 * time.Second

// errHelp asks for the help text on stdout and exit 0.
var errHelp = errors.New("help requested")

// errVersion asks for the version line on stdout and exit 0.
var errVersion = errors.New("version requested")

// usageError is a mistake on the command line: it exits with exitUsage and a
// hint at the command's synopsis.
type usageError struct {
	cmd string // the command, or "" for the global part
	msg string
}

func (e *usageError) Error() string {
	if e.cmd == "" {
		return e.msg
	}
	return e.cmd + ": " + e.msg
}

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// command is one parsed command, ready to run against the holder.
type command interface {
	run(ctx context.Context, a *app) error
}

// interruptible is a command that runs until it is told to stop (list
// --watch): SIGINT and SIGTERM cancel its ctx, and it ends cleanly, with
// exit 0. Every other command is a request or two, or an exec, which the
// signals' default disposition ends just as well; a handler would cost
// each of them its start-up share (os/signal's goroutine waits for signals
// on a thread of its own, and NotifyContext adds another goroutine: two
// more threads started, about 20 more context switches and half a
// millisecond of CPU for fdclient exec, measured in docs/benchmarks.md).
type interruptible interface {
	command
	interruptible()
}

// app is what the commands share: where the holder is, how long a request
// may take, where output goes, and the connection once dialled.
type app struct {
	socket  string        // "" means fdholder.SocketPath()
	timeout time.Duration // per request; 0: no limit
	stdout  io.Writer
	stderr  io.Writer // notices that are not errors

	client *fdholder.Client
}

// request returns the context for one request to the holder: ctx bounded
// by --timeout.
func (a *app) request(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, a.timeout)
}

// dial returns the connection to the holder, dialling it on first use
// within ctx (a request's context).
func (a *app) dial(ctx context.Context) (*fdholder.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	c, err := fdholder.Dial(ctx, a.socket)
	if err != nil {
		return nil, err
	}
	a.client = c
	return c, nil
}

// close closes the connection to the holder, if any.
func (a *app) close() {
	if a.client != nil {
		a.client.Close()
		a.client = nil
	}
}

// run is fdclient: it parses args (without the program name), runs the
// command, reports an error as one "fdclient: ..." line on stderr, and
// returns the exit code. The command line is parsed completely before the
// holder is contacted, so a usage error never has side effects.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a, cmd, err := parseArgs(args)
	if errors.Is(err, errHelp) {
		io.WriteString(stdout, helpText())
		return exitOK
	}
	if errors.Is(err, errVersion) {
		io.WriteString(stdout, version.Line("fdclient"))
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "fdclient: %v\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			io.WriteString(stderr, usageHint(ue.cmd))
		}
		return exitUsage
	}
	a.stdout, a.stderr = stdout, stderr
	if _, ok := cmd.(interruptible); ok {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
	}
	defer a.close()
	if err := cmd.run(ctx, a); err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%w (no answer within --timeout %v)", err, a.timeout)
		}
		if errors.Is(err, fdholder.ErrPermission) && !errors.Is(err, syscall.EACCES) {
			// The holder's policy refused (connect(2) did not): say
			// what grants it.
			err = fmt.Errorf("%w (the holder's policy file, fdholderd --policy, grants ops on names to uids and groups: docs/security.md)", err)
		}
		fmt.Fprintf(stderr, "fdclient: %s\n", oneLine(err.Error()))
		return exitCode(err)
	}
	return exitOK
}

// exitCode maps an error of a command to its exit code, by the root
// package's sentinels.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, fdholder.ErrInvalidName):
		return exitUsage
	case errors.Is(err, fdholder.ErrNotFound), errors.Is(err, fdholder.ErrNoProcess), errors.Is(err, fdholder.ErrNoMatch):
		return exitNotFound
	case errors.Is(err, fdholder.ErrExists):
		return exitExists
	case errors.Is(err, fdholder.ErrPermission), errors.Is(err, fdholder.ErrPtraceDenied):
		return exitPermission
	case errors.Is(err, fdholder.ErrUnreachable):
		return exitUnreachable
	}
	return exitError
}

// oneLine keeps an error message on one line, whatever its source put in
// it.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// parseArgs parses the global flags, the command and its arguments. It
// returns errHelp for --help, -h and "help", and a *usageError for anything
// it cannot run. It does no I/O.
func parseArgs(args []string) (*app, command, error) {
	a := &app{}
	fs := newFlagSet("")
	fs.StringVar(&a.socket, "socket", "", "")
	a.timeout = defaultTimeout
	durationFlag(fs, "timeout", &a.timeout)
	showVersion := fs.Bool("version", false, "")
	if err := parseFlags(fs, "", args); err != nil {
		return nil, nil, err
	}
	if *showVersion {
		return nil, nil, errVersion
	}
	if a.timeout < 0 {
		return nil, nil, usagef("", "negative --timeout %v", a.timeout)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return nil, nil, usagef("", "no command given")
	}
	name, args := rest[0], rest[1:]
	var cmd command
	var err error
	switch name {
	case "help":
		return nil, nil, errHelp
	case "listen":
		cmd, err = parseListen(args)
	case "store":
		cmd, err = parseStore(args)
	case "exec":
		cmd, err = parseExec(args)
	case "list":
		cmd, err = parseList(args)
	case "delete":
		cmd, err = parseDelete(args)
	case "transfer":
		cmd, err = parseTransfer(args)
	case "adopt":
		cmd, err = parseAdopt(args)
	default:
		return nil, nil, usagef("", "unknown command %q", name)
	}
	if err != nil {
		return nil, nil, err
	}
	return a, cmd, nil
}

// newFlagSet returns a silent flag set: parseFlags words the errors. It is
// a variable so that a test can see every flag set the commands define.
var newFlagSet = func(cmd string) *flag.FlagSet {
	fs := flag.NewFlagSet("fdclient "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args with fs, turning -h and --help into errHelp and
// other failures into a *usageError of cmd.
func parseFlags(fs *flag.FlagSet, cmd string, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return errHelp
	}
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok && cmd != "" && globalFlagArg[name] != "" {
		return usagef(cmd, "--%s is a global flag: put it before the command, as in 'fdclient --%s %s %s ...'", name, name, globalFlagArg[name], cmd)
	}
	return &usageError{cmd: cmd, msg: err.Error()}
}

// globalFlagArg names the flags that go before COMMAND, with what they
// take.
var globalFlagArg = map[string]string{"socket": "PATH", "timeout": "DUR"}

// durationFlag registers a duration flag whose error for a bad value shows
// what a duration looks like: a bare number is the usual mistake.
func durationFlag(fs *flag.FlagSet, name string, d *time.Duration) {
	fs.Func(name, "", func(s string) error {
		v, err := time.ParseDuration(s)
		if err != nil {
			if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
				return fmt.Errorf("a duration needs a unit, such as %ss, %sm or %sh", s, s, s)
			}
			return errors.New("want a duration such as 500ms, 30s, 5m or 1h30m")
		}
		*d = v
		return nil
	})
}

// wantArgs checks that a command got exactly n positional arguments.
func wantArgs(cmd string, args []string, n int, what string) error {
	if len(args) == n {
		return nil
	}
	for _, s := range args {
		if strings.HasPrefix(s, "-") && len(s) > 1 {
			return usagef(cmd, "flag %s after the arguments: flags go before %s", s, what)
		}
	}
	if len(args) < n {
		return usagef(cmd, "missing arguments: want %s", what)
	}
	return usagef(cmd, "too many arguments: want %s", what)
}

// parseName checks a NAME argument against the holder's naming rule, so that
// an invalid name is a usage error before the holder is contacted.
func parseName(cmd, name string) error {
	if err := fdholder.ValidateName(name); err != nil {
		return usagef(cmd, "invalid name %q: %s", name, fdholder.NameRule)
	}
	return nil
}

// ttlFlag registers --ttl on fs.
func ttlFlag(fs *flag.FlagSet, ttl *time.Duration) {
	durationFlag(fs, "ttl", ttl)
}

// checkTTL refuses a --ttl the holder would refuse: a negative one, or one
// whose expiry the protocol cannot carry.
func checkTTL(cmd string, ttl time.Duration) error {
	if err := fdholder.CheckTTL(ttl); err != nil {
		return usagef(cmd, "--%v", err) // "--ttl 5s is ..."
	}
	return nil
}
