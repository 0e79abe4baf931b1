package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fdholder/fdholder/internal/holder"
	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/testutil"
)

// report is what testdata/listenfds prints.
type report struct {
	PID int               `json:"pid"`
	Env map[string]string `json:"env"`
	FDs []struct {
		FD      int    `json:"fd"`
		Target  string `json:"target"`
		Cloexec bool   `json:"cloexec"`
	} `json:"fds"`
	Received []received `json:"received"`
	Errors   []string   `json:"errors"`
}

type received struct {
	FD   int    `json:"fd"`
	Name string `json:"name"`
}

// execRun is a running "fdclient exec ... -- listenfds".
type execRun struct {
	cmd    *exec.Cmd
	lines  chan string // the consumer's stdout, line by line
	stderr *bytes.Buffer
}

// startExec starts fdclient with args (an exec command line) against the
// holder at socket, with extra as descriptors 3, 4, ... inherited without
// O_CLOEXEC, and env added to its environment.
func startExec(t testing.TB, socket string, extra []*os.File, env []string, args ...string) *execRun {
	t.Helper()
	cmd := fdclientCmd(t, socket, args...)
	cmd.ExtraFiles = extra
	cmd.Env = append(cmd.Env, env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	run := &execRun{cmd: cmd, lines: make(chan string, 4), stderr: &bytes.Buffer{}}
	cmd.Stderr = run.stderr
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		defer close(run.lines)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			run.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill() // a process this test started, by its pid
			cmd.Wait()
		}
	})
	return run
}

// report waits for the consumer's report.
func (r *execRun) report(t testing.TB) report {
	t.Helper()
	var line string
	select {
	case l, ok := <-r.lines:
		if !ok {
			t.Fatalf("no report; fdclient: %v", r.wait(t))
		}
		line = l
	case <-time.After(20 * time.Second):
		t.Fatalf("no report within 20s; stderr %q", r.stderr)
	}
	var rep report
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		t.Fatalf("report %q: %v", line, err)
	}
	return rep
}

// wait waits for the process to end and drains its output.
func (r *execRun) wait(t testing.TB) result {
	t.Helper()
	var out strings.Builder
	for l := range r.lines {
		out.WriteString(l + "\n")
	}
	err := r.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("wait: %v", err)
	}
	return result{stdout: out.String(), stderr: r.stderr.String(), code: r.cmd.ProcessState.ExitCode()}
}

// greeting connects to a listener the consumer serves and returns the name
// it answers with.
func greeting(t testing.TB, network, address string) string {
	t.Helper()
	c, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, address, err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s: %v", address, err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// heldInode returns the inode of the socket held under name ("socket:[N]"
// as /proc shows it), to recognise the very same socket in another process.
func heldInode(t testing.TB, socket, name string) string {
	t.Helper()
	f, _, err := dialHolder(t, socket).Get(t.Context(), name)
	if err != nil {
		t.Fatalf("get %q: %v", name, err)
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var target string
	rc.Control(func(fd uintptr) { target, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd))) })
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// checkDescriptors checks what the consumer had open when it started. A
// descriptor that came through execve(2) has no FD_CLOEXEC; the consumer's
// Go runtime opens its own (cgroup files, epoll) with it. So the inherited
// ones must be exactly 0-2 and the sockets held under names, at 3, 4, ...
// (the very sockets: same inode), and nothing at all may be the file
// canary or a socket or pipe other than those.
func checkDescriptors(t testing.TB, socket string, rep report, names []string, canary string) {
	t.Helper()
	inodes := map[int]string{}
	want := []int{0, 1, 2}
	for i, name := range names {
		inodes[3+i] = heldInode(t, socket, name)
		want = append(want, 3+i)
	}
	var inherited []int
	for _, fd := range rep.FDs {
		if !fd.Cloexec {
			inherited = append(inherited, fd.FD)
		}
		switch held, ok := inodes[fd.FD]; {
		case ok && fd.Target != held:
			t.Errorf("fd %d is %s, want the held socket %s", fd.FD, fd.Target, held)
		case !ok && (fd.Target == canary || strings.HasPrefix(fd.Target, "socket:") || strings.HasPrefix(fd.Target, "pipe:") && fd.FD > 2):
			t.Errorf("fd %d (%s, cloexec %v) leaked into the program", fd.FD, fd.Target, fd.Cloexec)
		}
	}
	if !slices.Equal(inherited, want) {
		t.Errorf("descriptors inherited through exec: %v, want %v; all open: %+v", inherited, want, rep.FDs)
	}
}

func TestExec(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	dir := testutil.ShortDir(t)
	web := strings.TrimSpace(mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:0").stdout)
	appPath := filepath.Join(dir, "app.sock")
	mustRun(t, h.Path, "listen", "app", "unix:"+appPath)
	mustRun(t, h.Path, "listen", "dns", "udp:127.0.0.1:0")

	// Descriptors fdclient inherits without O_CLOEXEC, as from a careless
	// parent: a file, a socket and a pipe, at 3 to 9, so that some sit in
	// the target slots 3-6 and some above them. None may reach PROG.
	canaryPath := filepath.Join(dir, "canary")
	canary, err := os.Create(canaryPath)
	if err != nil {
		t.Fatal(err)
	}
	defer canary.Close()
	leakLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer leakLn.Close()
	leakSock, err := leakLn.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer leakSock.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	extra := []*os.File{canary, leakSock, pr, pw, canary, leakSock, canary}

	// Stale variables of sd_listen_fds(3) from fdclient's own parent.
	stale := []string{"LISTEN_FDS=9", "LISTEN_PID=1", "LISTEN_FDNAMES=stale", "LISTEN_PIDFDID=7"}

	// The order of the arguments, not of the names, decides the slots; api
	// is created by exec itself.
	run := startExec(t, h.Path, extra, stale,
		"exec", "web", "app", "api=tcp:127.0.0.1:0", "dns", "--", listenfdsBin)
	rep := run.report(t)

	if rep.PID != run.cmd.Process.Pid {
		t.Errorf("consumer pid %d, want fdclient's pid %d (exec without fork)", rep.PID, run.cmd.Process.Pid)
	}
	wantEnv := map[string]string{
		"LISTEN_FDS":     "4",
		"LISTEN_PID":     strconv.Itoa(run.cmd.Process.Pid),
		"LISTEN_FDNAMES": "web:app:api:dns",
	}
	if fmt.Sprint(rep.Env) != fmt.Sprint(wantEnv) {
		t.Errorf("LISTEN_* environment %v, want exactly %v", rep.Env, wantEnv)
	}
	wantRecv := []received{{3, "web"}, {4, "app"}, {5, "api"}, {6, "dns"}}
	if !slices.Equal(rep.Received, wantRecv) {
		t.Errorf("activation.Files gave %v, want %v", rep.Received, wantRecv)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("consumer errors: %v", rep.Errors)
	}

	checkDescriptors(t, h.Path, rep, []string{"web", "app", "api", "dns"}, canaryPath)

	// Every stream socket works and is the one held under its name.
	api := entry(t, h.Path, "api")
	if api == nil || api["network"] != "tcp" {
		t.Fatalf("exec with api=tcp:127.0.0.1:0 did not create the entry: %v", api)
	}
	if api["owner_pid"] != float64(run.cmd.Process.Pid) {
		t.Errorf("api owner %v, want fdclient's pid %d", api["owner_pid"], run.cmd.Process.Pid)
	}
	for _, c := range []struct{ network, address, name string }{
		{"tcp", web, "web"}, {"unix", appPath, "app"}, {"tcp", api["address"].(string), "api"},
	} {
		if got := greeting(t, c.network, c.address); got != c.name {
			t.Errorf("%s %s answered %q, want %q", c.network, c.address, got, c.name)
		}
	}
	if r := run.wait(t); r.code != 0 || r.stderr != "" {
		t.Errorf("consumer ended with %v", r)
	}
	// The holder still has every socket.
	if got := len(listJSON(t, h.Path)); got != 4 {
		t.Errorf("%d entries after exec, want 4", got)
	}
}

func TestExecWait(t *testing.T) {
	testutil.CheckLeaks(t)
	h, logs := holdertest.StartObserved(t)
	// The wait's length is not the subject, only that fdclient asks again
	// until the name is held: it must outlast the start of a second
	// fdclient (a -race binary) on a busy machine, which 10s need not.
	run := startExec(t, h.Path, nil, nil, "exec", "--wait", "2m", "late", "--", listenfdsBin)
	// The path this test is about: fdclient asked, found the name missing,
	// and waits. The holder's audit line of that miss says it has.
	missed := func() bool {
		return logs.FilterMessage("request").FilterField(zap.String("name", "late")).
			FilterField(zap.String("result", proto.CodeNotFound.String())).Len() > 0
	}
	for deadline := time.Now().Add(20 * time.Second); !missed(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("fdclient exec --wait did not ask for %q within 20s", "late")
		}
	}
	addr := strings.TrimSpace(mustRun(t, h.Path, "listen", "late", "tcp:127.0.0.1:0").stdout)
	rep := run.report(t)
	if want := []received{{3, "late"}}; !slices.Equal(rep.Received, want) {
		t.Errorf("received %v, want %v", rep.Received, want)
	}
	if got := greeting(t, "tcp", addr); got != "late" {
		t.Errorf("answered %q, want late", got)
	}
	if r := run.wait(t); r.code != 0 {
		t.Errorf("consumer ended with %v", r)
	}
}

// TestExecWaitsForHolder starts fdclient exec --wait before any holder
// listens at its socket path, as a container started beside the holder's
// sidecar does, then starts the holder there: fdclient dials again, binds
// and stores the socket, and runs the program with it.
func TestExecWaitsForHolder(t *testing.T) {
	testutil.CheckLeaks(t)
	path := filepath.Join(testutil.ShortDir(t), "late.sock")
	run := startExec(t, path, nil, nil, "exec", "--wait", "20s", "web=tcp:127.0.0.1:0", "--", listenfdsBin)
	reg := holder.NewRegistry(holder.RegistryOptions{Logger: zaptest.NewLogger(t)})
	t.Cleanup(reg.Close)
	holdertest.StartOn(t, path, reg)
	rep := run.report(t)
	if want := []received{{3, "web"}}; !slices.Equal(rep.Received, want) {
		t.Errorf("received %v, want %v", rep.Received, want)
	}
	entries := listJSON(t, path)
	if len(entries) != 1 || entries[0]["name"] != "web" {
		t.Fatalf("entries after exec: %v, want web", entries)
	}
	if got := greeting(t, "tcp", entries[0]["address"].(string)); got != "web" {
		t.Errorf("answered %q, want web", got)
	}
	if r := run.wait(t); r.code != 0 {
		t.Errorf("consumer ended with %v", r)
	}
}

// TestExecWaitForHolderTimesOut: with no holder at all, --wait ends in
// exit 6, and the message says how long it asked.
func TestExecWaitForHolderTimesOut(t *testing.T) {
	testutil.CheckLeaks(t)
	path := filepath.Join(testutil.ShortDir(t), "none.sock")
	r := fdclient(t, path, "exec", "--wait", "300ms", "web=tcp:127.0.0.1:0", "--", listenfdsBin)
	if r.code != exitUnreachable || !strings.Contains(r.stderr, "holder unreachable at "+path) || !strings.Contains(r.stderr, "(waited 300ms)") {
		t.Fatalf("%v, want exit %d, holder unreachable, waited 300ms", r, exitUnreachable)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q: the program ran", r.stdout)
	}
}

func TestExecFailures(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:0")
	dir := testutil.ShortDir(t)
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte{0x7f, 'E', 'L', 'F', 0, 0, 0, 0}, 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"wait times out", []string{"exec", "--wait", "300ms", "ghost", "--", listenfdsBin}, exitNotFound, `get "ghost": not held (waited 300ms)`},
		{"one of two not held", []string{"exec", "web", "ghost", "--", listenfdsBin}, exitNotFound, `get "ghost": not held`},
		{"missing prog in PATH", []string{"exec", "web", "new=tcp:127.0.0.1:0", "--", "no-such-program-fdclient"}, exitError, `exec: cannot run "no-such-program-fdclient": executable file not found in $PATH`},
		{"missing prog path", []string{"exec", "new=tcp:127.0.0.1:0", "--", filepath.Join(dir, "nope")}, exitError, "no such file or directory"},
		{"prog not executable", []string{"exec", "new=tcp:127.0.0.1:0", "--", notExec}, exitError, "permission denied"},
		// Found and executable, so the descriptors are arranged, and then
		// execve(2) itself fails.
		{"prog execve fails", []string{"exec", "web", "--", garbage}, exitError, "exec format error"},
		{"get-or-create network mismatch", []string{"exec", "web=udp:127.0.0.1:0", "--", listenfdsBin}, exitError, "held socket is tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fdclient(t, h.Path, tt.args...)
			if r.code != tt.code {
				t.Fatalf("%v, want exit %d", r, tt.code)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q: the program ran", r.stdout)
			}
			if !strings.HasPrefix(r.stderr, "fdclient: ") || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q, want one line with %q", r.stderr, tt.want)
			}
		})
	}
	// A PROG that cannot be found is found out before anything is created.
	if e := entry(t, h.Path, "new"); e != nil {
		t.Errorf("failed exec created %v", e)
	}
}

// TestExecManySockets puts sockets in slots 3-14, where fdclient's own Go
// runtime keeps descriptors (its cgroup files, its netpoller's epoll and
// eventfd) and where its holder connection was: the rearranging must not
// disturb the runtime, and nothing of it may reach the program.
func TestExecManySockets(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	var names, args []string
	for i := range 12 {
		name := fmt.Sprintf("s%02d", 12-i) // not in name order
		names = append(names, name)
		args = append(args, name+"=tcp:127.0.0.1:0")
	}
	for round := range 3 { // created by the first round, got by the others
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			run := startExec(t, h.Path, nil, nil, append(append([]string{"exec"}, args...), "--", listenfdsBin)...)
			rep := run.report(t)
			var want []received
			for i, name := range names {
				want = append(want, received{3 + i, name})
			}
			if !slices.Equal(rep.Received, want) {
				t.Errorf("received %v, want %v", rep.Received, want)
			}
			if rep.Env["LISTEN_FDNAMES"] != strings.Join(names, ":") || rep.PID != run.cmd.Process.Pid {
				t.Errorf("env %v, pid %d; want names %v, pid %d", rep.Env, rep.PID, names, run.cmd.Process.Pid)
			}
			checkDescriptors(t, h.Path, rep, names, "")
			for _, name := range names {
				if got := greeting(t, "tcp", entry(t, h.Path, name)["address"].(string)); got != name {
					t.Errorf("%s answered %q", name, got)
				}
			}
			if r := run.wait(t); r.code != 0 {
				t.Errorf("consumer ended with %v", r)
			}
		})
	}
}

// TestExecVars runs the forms of --vars through a real exec: the consumer
// finds exactly the variables asked for, stale ones from fdclient's parent
// are gone, and a form without systemd leaves go-systemd nothing to take.
func TestExecVars(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:0")
	mustRun(t, h.Path, "listen", "api/v2", "tcp:127.0.0.1:0")
	stale := []string{"LISTEN_FDS=9", "NGINX=7;", "FDHOLDER_FD_OLD=9"}
	tests := []struct {
		name     string
		vars     string
		wantEnv  map[string]string
		received []received
	}{
		{
			name:    "nginx and names",
			vars:    "nginx,names",
			wantEnv: map[string]string{"NGINX": "3;4;", "FDHOLDER_FD_WEB": "3", "FDHOLDER_FD_API_V2": "4"},
		},
		{
			name:     "all",
			vars:     "systemd,nginx,names",
			received: []received{{3, "web"}, {4, "api/v2"}},
			wantEnv: map[string]string{"NGINX": "3;4;", "FDHOLDER_FD_WEB": "3", "FDHOLDER_FD_API_V2": "4",
				"LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:api/v2"}, // LISTEN_PID is checked apart
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := startExec(t, h.Path, nil, stale, "exec", "--vars", tt.vars, "web", "api/v2", "--", listenfdsBin)
			rep := run.report(t)
			if tt.received != nil {
				if got, want := rep.Env["LISTEN_PID"], strconv.Itoa(run.cmd.Process.Pid); got != want {
					t.Errorf("LISTEN_PID %q, want %q", got, want)
				}
				delete(rep.Env, "LISTEN_PID")
			}
			if fmt.Sprint(rep.Env) != fmt.Sprint(tt.wantEnv) {
				t.Errorf("socket variables %v, want exactly %v", rep.Env, tt.wantEnv)
			}
			if !slices.Equal(rep.Received, tt.received) {
				t.Errorf("activation.Files gave %v, want %v", rep.Received, tt.received)
			}
			checkDescriptors(t, h.Path, rep, []string{"web", "api/v2"}, "")
			for _, name := range []string{"web", "api/v2"} {
				if tt.received == nil {
					break // nothing serves: the consumer took no socket
				}
				if got := greeting(t, "tcp", entry(t, h.Path, name)["address"].(string)); got != name {
					t.Errorf("%s answered %q", name, got)
				}
			}
			if r := run.wait(t); r.code != 0 {
				t.Errorf("consumer ended with %v", r)
			}
		})
	}
}
