package main

// This file owns the environment "fdclient exec" gives PROG: which
// variables describe the passed sockets (--vars), in the forms the servers
// people run read them. docs/servers.md has a recipe per server.

import (
	"fmt"
	"strconv"
	"strings"
)

// The forms --vars can name.
const (
	varsSystemd = "systemd" // LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES (sd_listen_fds(3))
	varsNginx   = "nginx"   // NGINX="3;4;...;" (nginx's own inheritance, src/core/nginx.c)
	varsNames   = "names"   // FDHOLDER_FD_<NAME>=N, for configs that say fd@${VAR}
)

// fdVarPrefix starts the variable that carries one NAME's descriptor number
// with --vars names.
const fdVarPrefix = "FDHOLDER_FD_"

// execVars is the set of forms of --vars. The zero value is not valid:
// parseVars returns the default, systemd alone.
type execVars struct {
	systemd, nginx, names bool
}

// parseVars parses the value of --vars: a comma-separated list of systemd,
// nginx and names.
func parseVars(s string) (execVars, error) {
	var v execVars
	for _, f := range strings.Split(s, ",") {
		switch f {
		case varsSystemd:
			v.systemd = true
		case varsNginx:
			v.nginx = true
		case varsNames:
			v.names = true
		default:
			return v, fmt.Errorf("--vars %q: unknown form %q (want a comma-separated list of %s, %s, %s)",
				s, f, varsSystemd, varsNginx, varsNames)
		}
	}
	return v, nil
}

// fdVar returns the variable that carries NAME's descriptor number with
// --vars names: FDHOLDER_FD_ and the name in upper case, with every byte
// that may not appear in a shell variable's name (. @ / + -) as '_'. So
// "web" is FDHOLDER_FD_WEB and "api/v2" is FDHOLDER_FD_API_V2.
func fdVar(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return fdVarPrefix + string(b)
}

// checkFDVars returns an error if two names map to the same variable, which
// would pass one of them under the other's number.
func checkFDVars(names []string) error {
	seen := make(map[string]string, len(names))
	for _, name := range names {
		v := fdVar(name)
		if other, ok := seen[v]; ok {
			return fmt.Errorf("--vars names: %q and %q would both be %s: rename one", other, name, v)
		}
		seen[v] = name
	}
	return nil
}

// isSocketVar reports whether kv (NAME=VALUE) is a variable some form of
// --vars sets. fdclient drops every one it inherits, whatever --vars says:
// a stale one would describe descriptors PROG does not have.
func isSocketVar(kv string) bool {
	return strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, "NGINX=") || strings.HasPrefix(kv, fdVarPrefix)
}

// execEnv returns environ without the socket variables it had, plus those
// of the forms in v for names passed at descriptors 3, 4, ... of process
// pid.
func execEnv(environ []string, pid int, names []string, v execVars) []string {
	env := make([]string, 0, len(environ)+3+len(names))
	for _, kv := range environ {
		if !isSocketVar(kv) {
			env = append(env, kv)
		}
	}
	if v.systemd {
		env = listenEnv(env, pid, names)
	}
	if v.nginx {
		// nginx ignores a number that no ';' follows (ngx_add_inherited_sockets
		// splits on ':' and ';' and only takes a number when it meets one).
		var b strings.Builder
		for i := range names {
			b.WriteString(strconv.Itoa(listenFDsStart+i) + ";")
		}
		env = append(env, "NGINX="+b.String())
	}
	if v.names {
		for i, name := range names {
			env = append(env, fdVar(name)+"="+strconv.Itoa(listenFDsStart+i))
		}
	}
	return env
}
