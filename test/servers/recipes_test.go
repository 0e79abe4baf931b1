package servers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/fdholder/fdholder/internal/e2etest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// recipe is one server's section of docs/servers.md: how fdclient exec
// starts it, how it is stopped gracefully, and how it binds the port itself
// for the baseline. Keep the two in step: the doc quotes these lines.
type recipe struct {
	name string
	vars string         // fdclient exec --vars; "" for the default (systemd)
	stop syscall.Signal // the graceful stop

	// pidHeader: the replies carry the pid of the process that answered
	// (X-Pid), which proves who serves. readyLog is a line the server logs
	// when it serves, if it says none in its replies.
	pidHeader bool
	readyLog  string

	// workers is how many processes the server forks to serve: an
	// instance is ready once each has answered (pidHeader). A worker just
	// forked has not installed its signal handlers yet: gunicorn's and
	// uWSGI's masters, stopped then, wait for a worker that never heard of
	// the stop. acceptAtFork: the workers accept as soon as they exist
	// (nginx's), so an overlapping restart need not wait for a reply from
	// the new instance, which the kernel gives the old instance's waiting
	// processes first (EPOLLEXCLUSIVE wakes the earliest waiter).
	workers      int
	acceptAtFork bool

	// overlap: measure restarts in both orders (docs/servers.md's
	// "Overlapping restarts").
	overlap bool

	// dropsPerStop: the graceful stop closes, unanswered, at most this
	// many connections it had accepted: the server's own behaviour, which
	// no recipe avoids (docs/servers.md proves it for each). uvicorn's
	// closes every accepted connection whose request had not arrived, up
	// to one per wrk connection; uWSGI 2.0.21's worker exits from its
	// SIGHUP handler holding the connection it had just accepted, up to
	// one per worker. They are read errors; nothing else may fail.
	// drops400: such a connection may get a 400 instead (its request
	// arrived after the close: uvicorn's h11 "Got data when expecting
	// EOF").
	dropsPerStop int
	drops400     bool

	// keepAliveClean: the graceful stop leaves keep-alive clients without
	// errors but its drops (asserted); for the others the errors are
	// reported.
	keepAliveClean bool

	// prepare finds the server (skipping the test if it is missing) and
	// writes its configuration into e.dir.
	prepare func(t testing.TB, e *env)
	// command is the server's command line: with held, what follows
	// "fdclient exec [--vars V] web=tcp:127.0.0.1:PORT --"; without, the
	// command that binds e.addr() itself. gen numbers the instance,
	// for its log files.
	command func(e *env, held bool, gen int) []string
}

// env is what a recipe needs to know about its test.
type env struct {
	dir      string // the test's directory: configuration, pid and log files
	host     string // 127.0.0.1 with the holder, as the recipes say
	port     int
	testdata string // this package's testdata, absolute
	bin      string // the server's program, as prepare found it
}

func (e *env) addr() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// lookPath returns the path of a server's program, or skips the test.
func lookPath(t testing.TB, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		// Debian puts nginx, haproxy and lighttpd in /usr/sbin, which a
		// non-root PATH may lack.
		if _, serr := os.Stat("/usr/sbin/" + prog); serr == nil {
			return "/usr/sbin/" + prog
		}
	}
	testutil.NeedPeer(t, err == nil, "%s (apt-get install %s): %v", prog, pkg, err)
	return p
}

// writeFile writes a configuration file into e.dir and returns its path.
func writeFile(t testing.TB, e *env, name, text string) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// goserverBin is testdata/goserver, built by TestMain.
var goserverBin string

var recipes = []recipe{
	{
		name: "nginx", vars: "nginx", stop: syscall.SIGQUIT, pidHeader: true, workers: 2, acceptAtFork: true, overlap: true,
		prepare: func(t testing.TB, e *env) {
			e.bin = lookPath(t, "nginx", "nginx")
			// Every path nginx writes is under e.dir (-p, -e and the
			// config), so that instances never share a file.
			writeFile(t, e, "nginx.conf", fmt.Sprintf(`daemon off;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s;
        location / {
            add_header X-Pid $pid;
            return 200 "ok\n";
        }
    }
}
`, e.dir, e.addr()))
		},
		command: func(e *env, held bool, gen int) []string {
			return []string{e.bin, "-p", e.dir, "-e", filepath.Join(e.dir, "error.log"), "-c", filepath.Join(e.dir, "nginx.conf")}
		},
	},
	{
		name: "haproxy", vars: "names", stop: syscall.SIGUSR1, pidHeader: true,
		prepare: func(t testing.TB, e *env) {
			e.bin = lookPath(t, "haproxy", "haproxy")
			const cfg = `global
    pidfile %s/haproxy.pid
defaults
    mode http
    timeout client 10s
    timeout connect 5s
    timeout server 10s
frontend web
    bind %s
    http-request return status 200 content-type text/plain string "ok\n" hdr x-pid "%%pid"
`
			writeFile(t, e, "haproxy.cfg", fmt.Sprintf(cfg, e.dir, `"fd@${FDHOLDER_FD_WEB}"`))
			writeFile(t, e, "haproxy-bind.cfg", fmt.Sprintf(cfg, e.dir, e.addr()))
		},
		command: func(e *env, held bool, gen int) []string {
			if held {
				return []string{e.bin, "-f", filepath.Join(e.dir, "haproxy.cfg")}
			}
			return []string{e.bin, "-f", filepath.Join(e.dir, "haproxy-bind.cfg")}
		},
	},
	{
		name: "lighttpd", stop: syscall.SIGINT, readyLog: "server started",
		prepare: func(t testing.TB, e *env) {
			e.bin = lookPath(t, "lighttpd", "lighttpd")
			writeFile(t, e, "index.html", "ok\n")
			// server.bind and server.port must be the held address
			// exactly. Without server.errorlog, lighttpd logs to its
			// standard error, where the test finds readyLog.
			writeFile(t, e, "lighttpd.conf", fmt.Sprintf(`server.document-root = "%[1]s"
server.bind = "%[2]s"
server.port = %[3]d
server.systemd-socket-activation = "enable"
index-file.names = ("index.html")
`, e.dir, e.host, e.port))
		},
		command: func(e *env, held bool, gen int) []string {
			// -D: in the foreground.
			return []string{e.bin, "-D", "-f", filepath.Join(e.dir, "lighttpd.conf")}
		},
	},
	{
		name: "uwsgi", vars: "names", stop: syscall.SIGTERM, pidHeader: true, workers: 2, dropsPerStop: 2, keepAliveClean: true,
		prepare: func(t testing.TB, e *env) {
			e.bin = lookPath(t, "uwsgi", "uwsgi-core")
			_, err := os.Stat("/usr/lib/uwsgi/plugins/python3_plugin.so")
			testutil.NeedPeer(t, err == nil, "uWSGI's python3 plugin (apt-get install uwsgi-plugin-python3): %v", err)
		},
		command: func(e *env, held bool, gen int) []string {
			socket := "fd://$(FDHOLDER_FD_WEB)" // uWSGI expands $(VAR) itself
			if !held {
				socket = e.addr()
			}
			return []string{e.bin, "--plugin", "python3", "--http-socket", socket,
				"--wsgi-file", filepath.Join(e.testdata, "wsgi.py"), "--master", "--processes", "2",
				"--hook-master-start", "unix_signal:15 gracefully_kill_them_all",
				"--worker-reload-mercy", "5", "--add-header", "Connection: close", "--disable-logging"}
		},
	},
	{
		name: "gunicorn", stop: syscall.SIGTERM, pidHeader: true, workers: 2, keepAliveClean: true, overlap: true,
		prepare: func(t testing.TB, e *env) {
			e.bin = e2etest.NeedPython(t, "gunicorn", "python3-gunicorn")
		},
		command: func(e *env, held bool, gen int) []string {
			cmd := []string{e.bin, "-m", "gunicorn", "--workers", "2", "--chdir", e.testdata}
			if !held {
				cmd = append(cmd, "--bind", e.addr())
			}
			return append(cmd, "wsgi:application")
		},
	},
	{
		name: "uvicorn", stop: syscall.SIGTERM, pidHeader: true, dropsPerStop: wrkConns, drops400: true,
		prepare: func(t testing.TB, e *env) {
			e.bin = e2etest.NeedPython(t, "uvicorn", "python3-uvicorn")
		},
		command: func(e *env, held bool, gen int) []string {
			cmd := []string{e.bin, "-m", "uvicorn", "--no-access-log", "--app-dir", e.testdata}
			if held {
				cmd = append(cmd, "--fd", "3")
			} else {
				cmd = append(cmd, "--host", e.host, "--port", strconv.Itoa(e.port))
			}
			return append(cmd, "asgi:app")
		},
	},
	{
		name: "node", vars: "names", stop: syscall.SIGTERM, pidHeader: true, keepAliveClean: true,
		prepare: func(t testing.TB, e *env) {
			e.bin = lookPath(t, "node", "nodejs")
		},
		command: func(e *env, held bool, gen int) []string {
			cmd := []string{e.bin, filepath.Join(e.testdata, "server.js")}
			if !held {
				cmd = append(cmd, e.addr())
			}
			return cmd
		},
	},
	{
		name: "go", stop: syscall.SIGTERM, pidHeader: true,
		prepare: func(t testing.TB, e *env) {
			if goserverBin == "" {
				t.Fatal("testdata/goserver was not built (see TestMain's output)")
			}
			e.bin = goserverBin
		},
		command: func(e *env, held bool, gen int) []string {
			if held {
				return []string{e.bin}
			}
			return []string{e.bin, "-addr", e.addr()}
		},
	},
	{
		name: "python", vars: "names", stop: syscall.SIGTERM, pidHeader: true, keepAliveClean: true,
		prepare: func(t testing.TB, e *env) {
			e.bin = e2etest.NeedPython(t, "http.server", "python3")
		},
		command: func(e *env, held bool, gen int) []string {
			cmd := []string{e.bin, filepath.Join(e.testdata, "stdlib.py")}
			if !held {
				cmd = append(cmd, e.addr())
			}
			return cmd
		},
	},
}
