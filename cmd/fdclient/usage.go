package main

import (
	"fmt"
	"strings"

	"github.com/fdholder/fdholder"
)

// synopses are the command lines of the commands, for the help text and the
// hint after a usage error.
var synopses = []struct{ cmd, line string }{
	{"listen", "fdclient [GLOBAL FLAGS] listen [--replace] [--ttl DUR] NAME NETWORK:ADDRESS"},
	{"store", "fdclient [GLOBAL FLAGS] store [--fd N] [--replace] [--ttl DUR] NAME"},
	{"adopt", "fdclient [GLOBAL FLAGS] adopt [--replace] [--ttl DUR] [--dry-run] --pid PID [--fd N] NAME [NETWORK:ADDRESS]"},
	{"exec", "fdclient [GLOBAL FLAGS] exec [--wait DUR] [--rebind] [--fallback] [--vars FORMS] NAME[=NETWORK:ADDRESS]... -- PROG [ARG...]"},
	{"list", "fdclient [GLOBAL FLAGS] list [--json | --names | --watch [--interval DUR]]"},
	{"delete", "fdclient [GLOBAL FLAGS] delete NAME"},
	{"transfer", "fdclient [GLOBAL FLAGS] transfer [--names GLOB] [--replace] --to PATH"},
}

// usageHint is what follows a usage error on stderr: the synopsis of cmd
// (or of every command) and where to read more.
func usageHint(cmd string) string {
	var b strings.Builder
	b.WriteString("usage:")
	for _, s := range synopses {
		if cmd == "" || s.cmd == cmd {
			b.WriteString("\n  " + s.line)
		}
	}
	b.WriteString("\nrun 'fdclient --help' for the details\n")
	return b.String()
}

// helpText is the output of "fdclient --help": the user documentation.
// testdata/help.golden holds a copy; refresh it with
// "go test ./cmd/fdclient -update".
func helpText() string {
	rule := fdholder.NameRule // "names are ..."
	return fmt.Sprintf(helpFormat, defaultTimeout, strings.ToUpper(rule[:1])+rule[1:])
}

const helpFormat = `fdclient talks to fdholderd, the daemon that holds sockets (listeners above
all) while the services that use them restart, so that no connection is
refused or reset in between.

Usage:
  fdclient [--socket PATH] [--timeout DUR] COMMAND [COMMAND FLAGS] ARGS...
  fdclient --help | -h | help
  fdclient --version

Flags go before arguments: global flags before COMMAND, a command's flags
before its first argument. DUR is a Go duration: 500ms, 30s, 5m, 1h30m.

Global flags:
  --socket PATH   the holder's socket. Default: $FDHOLDER_SOCKET if set, else
                  /run/fdholder/fdholder.sock for root, else
                  $XDG_RUNTIME_DIR/fdholder/fdholder.sock if XDG_RUNTIME_DIR
                  is set, else $TMPDIR/fdholder-UID/fdholder.sock ($TMPDIR
                  defaults to /tmp); if no holder answers there and
                  neither --socket nor $FDHOLDER_SOCKET is set, the
                  system's holder at /run/fdholder/fdholder.sock.
                  fdclient refuses a socket directory
                  another user owns or can write, and a holder that runs
                  as another user than root or fdclient's own (exit 1)
  --timeout DUR   limit for each request to the holder (default %v;
                  0: no limit)
  --version       print "fdclient VERSION" and exit 0

Commands:
  listen [--replace] [--ttl DUR] NAME NETWORK:ADDRESS
      Bind a new socket to ADDRESS, store it in the holder under NAME, and
      print the bound address on a line of its own (with port 0, the port
      the kernel picked). NETWORK is tcp, tcp4, tcp6, udp, udp4, udp6, unix,
      unixpacket or unixgram; the first colon separates it from ADDRESS,
      which is HOST:PORT for tcp and udp (PORT 0 picks a free port; an
      empty PORT is refused, as a setting left out more often than not),
      and a path or @NAME (abstract) for the unix networks:
        tcp:127.0.0.1:8080  tcp6:[::1]:8080  udp::5353  unix:/run/app.sock
      tcp, tcp4, tcp6, unix and unixpacket sockets are listening sockets.
      The file of a Unix socket stays in place after fdclient exits, and
      after delete: remove it before binding the same path again.
      --replace   if NAME is held, swap the new socket in (the holder closes
                  its old copy); without it a held NAME fails with exit
                  code 4. The old socket is still open while the new one is
                  bound, so the new one needs an address of its own.
      --ttl DUR   the holder closes and forgets the entry DUR after storing
                  it (default: never). The expiry must fall before
                  2262-04-11, the last time the protocol carries

  store [--fd N] [--replace] [--ttl DUR] NAME
      Store fdclient's descriptor N (default 0, standard input) under NAME;
      it must be a socket. A shell passes one with a redirection, as in
      "fdclient store --fd 3 web 3<&5". It prints nothing. --replace and
      --ttl are as for listen.

  adopt [--replace] [--ttl DUR] [--dry-run] --pid PID [--fd N] NAME [NETWORK:ADDRESS]
      Copy a socket out of the running process PID and store it under NAME
      as store does: the very socket the process serves on, which keeps
      serving undisturbed, while the holder's copy keeps the socket open
      after the process exits. This brings a server that binds its own port
      under the holder without restarting it. It prints what it adopted:
        adopted "web" from fd 3 of process 4242 (python3): tcp 127.0.0.1:8080, listening
      Copying needs ptrace rights over PID (pidfd_getfd(2)): the same user
      as a dumpable process, or CAP_SYS_PTRACE (root), as far as
      kernel.yama.ptrace_scope allows; a refusal says which rule failed and
      exits with code 5. Needs Linux 5.6.
      --pid PID   the process (required)
      --fd N      the socket is PID's descriptor N
      NETWORK:ADDRESS
                  the socket is the one listening on ADDRESS (for udp and
                  unixgram: bound to it), as listen names them; an empty
                  host matches any address: tcp::8080. With --fd too, the
                  descriptor must be that socket. No such socket exits with
                  code 3 and lists what PID does serve; several (an
                  SO_REUSEPORT group) exit with code 1 and list their
                  descriptors: pick one with --fd.
      --dry-run   print what would be adopted ("would adopt ..."), store
                  nothing, and do not contact the holder
      --replace and --ttl are as for listen.

  exec [--wait DUR] [--rebind] [--fallback] [--vars FORMS] NAME[=NETWORK:ADDRESS]... -- PROG [ARG...]
      Fetch the socket held under each NAME and execute PROG in place of
      fdclient, with the same process ID, as systemd socket activation
      would start it (sd_listen_fds(3)): the sockets are descriptors 3, 4,
      ... in the order of the NAMEs, LISTEN_FDS is their number, LISTEN_PID
      the process ID, and LISTEN_FDNAMES the NAMEs joined by ':'. Each NAME
      may be given once. PROG gets no other descriptor of
      fdclient's than standard input, output and error, not even one
      fdclient inherited; O_NONBLOCK is left as it is on every socket.
      PROG is looked up in $PATH unless it contains a slash. If it cannot
      be found, fdclient exits 1 before it contacts the holder; if
      execve(2) fails, fdclient exits 1 too.
      PROG must be the server itself, or a wrapper that ends with exec:
      LISTEN_PID is fdclient's process ID, which PROG inherits, so a shell
      script that starts the server as its child (without "exec") hands
      it a LISTEN_PID that is not its own, and the server binds a socket
      of its own instead ("address already in use").
      NAME=NETWORK:ADDRESS gets the socket held under NAME, or if there is
      none, binds one as listen does and stores it (get-or-create). A held
      socket of another network, or bound to another address (another
      port, say: the one in PROG's configuration changed), is an error
      that names both; --rebind moves it. PORT 0 accepts the held socket
      whatever its port.
      --wait DUR  if the holder does not answer yet, or a plain NAME is not
                  held yet, ask again (at growing intervals) for up to DUR;
                  then fail with exit code 6 or 3 (default 0: fail at once).
                  A container started beside the holder's waits this way.
      --rebind    a NAME=NETWORK:ADDRESS held on another address is moved:
                  bind ADDRESS, store the new socket under NAME with
                  replace (the holder closes its copy of the old one), and
                  keep the old socket open until PROG starts. Connections
                  still queued on the old socket are then reset
      --fallback  if the holder is unreachable (exit code 6 otherwise),
                  bind every NAME=NETWORK:ADDRESS here, warn on standard
                  error, and start PROG anyway: PROG serves, but its
                  sockets are not held, so they are refused while it
                  restarts until the holder is back. Every NAME needs an
                  ADDRESS. Off by default: the holder is there so that
                  restarts refuse nothing, and a service that silently ran
                  unheld would lose that without anyone noticing; turn it
                  on where starting at all matters more (availability over
                  protection)
      --vars FORMS
                  the variables that tell PROG where its sockets are: a
                  comma-separated list of (default: systemd)
                    systemd  LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES as above
                    nginx    NGINX="3;4;...;", the form nginx inherits
                    names    FDHOLDER_FD_<NAME>=N per NAME, for configs that
                             say fd@${FDHOLDER_FD_WEB}: NAME in upper case,
                             every . @ / + - as _ (two NAMEs that end up
                             alike are a usage error)
                  Every inherited LISTEN_*, NGINX and FDHOLDER_FD_* variable
                  is removed first. docs/servers.md has the command line
                  for nginx, HAProxy, lighttpd, uWSGI, gunicorn, uvicorn,
                  Node.js, Go and Python servers.

  list [--json | --names | --watch [--interval DUR]]
      Show the held entries in name order: NAME; NETWORK (tcp is IPv4 and
      tcp6 IPv6, udp likewise); ADDRESS; LISTEN, whether listen(2) was
      called; QUEUED, for TCP listeners the connections waiting to be
      accepted / the accept queue's size ("-" otherwise); OWNER, uid/pid of
      the process that stored it; STORED and EXPIRES (local time, "-" for
      never).
      --json  print a JSON array instead ([] when nothing is held), of
              objects with the keys name, network, address, listening,
              owner_uid, owner_gid, owner_pid, stored_at, expires_at (only
              for an entry that expires), and queued and backlog (only for
              TCP listeners). Times are RFC 3339 in UTC with nanoseconds.
      --names print the names only, one a line, for scripts and shell
              completion
      --watch show them again every --interval DUR (default 1s, at least
              100ms) with each TCP listener's queue over the last 30
              intervals: PEAK, the most connections waiting, and HISTORY,
              a bar per interval, oldest first (lowest: none waiting;
              highest: PEAK), so that a restart shows as a queue that
              fills and drains. On a terminal the table is redrawn in
              place, otherwise printed once per interval. Ctrl-C ends it
              (exit 0); a holder that goes away ends it with exit 6, one
              that stops answering (no reply within --timeout) with exit 1.

  delete NAME
      Remove the entry; the holder closes its copy of the socket. It
      prints nothing.

  transfer [--names GLOB] [--replace] --to PATH
      Copy entries to the holder listening at PATH: the very same sockets
      (not new ones bound to the same addresses) with their metadata (name,
      owner, stored and expiry times). Both holders hold them afterwards;
      delete them from this one when the move is done. Entries travel in
      batches of up to 253, the most descriptors one message carries. It
      prints "copied N entries to PATH". An entry the destination refuses
      (already held, not allowed) is reported on standard error and does
      not stop the others; the exit code is that of the first refusal.
      --timeout limits the whole transfer.
      --names GLOB  only the entries whose names match GLOB ('*', '?',
                    '[...]' as in path.Match: '*' does not match '/')
      --replace     replace entries PATH already holds under the same names
      --to PATH     the destination holder's socket (required)

  help
      Print this text.

%s.

Exit codes:
  0  success
  1  any other error: a failed bind, a descriptor that is not a socket,
     an untrusted socket directory or holder,
     no answer within --timeout, a PROG that cannot be executed
  2  usage: unknown command or flag, wrong arguments, an invalid NAME or
     NETWORK:ADDRESS
  3  not found: NAME is not held; for adopt, no such process or no
     matching socket
  4  already held: NAME is held (listen, store and transfer without
     --replace)
  5  permission denied: by the holder's policy, or by the mode of its
     socket or directory (the error names the permission and the flags
     that grant it); for adopt, by the kernel's ptrace rules
  6  holder unreachable: nothing listens at the socket path (the error
     says where fdclient looked), or no connection to it could be made
     within --timeout

Errors are reported on standard error as one line starting "fdclient:";
after a usage error the command's synopsis follows.

Examples:
  fdclient listen web tcp:127.0.0.1:8080
  fdclient exec web -- ./server              # a server that reads LISTEN_FDS
  fdclient exec web=tcp:127.0.0.1:8080 -- ./server
  fdclient exec --wait 30s web admin -- ./server
  fdclient exec --rebind web=tcp:127.0.0.1:8081 -- ./server  # web moves to 8081
  fdclient exec --vars nginx web=tcp:127.0.0.1:8080 -- nginx -c /etc/app/nginx.conf
  fdclient exec --vars names web -- haproxy -f /etc/app/haproxy.cfg
  fdclient adopt --pid 4242 web tcp:127.0.0.1:8080   # from a running server
  fdclient list
  fdclient delete web
  fdclient transfer --names 'web*' --to /run/fdholder-new/fdholder.sock
`
