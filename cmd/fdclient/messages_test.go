package main

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/holdertest"
	"github.com/fdholder/fdholder/internal/testutil"
)

// freePort returns a TCP port of ip the kernel had free a moment ago, for
// an address that fdclient binds itself. The second address of the tests
// is on 127.0.0.2, where no connection's source port can take it
// meanwhile.
func freePort(t testing.TB, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestMessages runs the fdclient binary into what a new user trips on
// (issue 12) and compares what it says, word for word, with
// testdata/messages.golden ("go test ./cmd/fdclient -update" rewrites it).
// Paths and ports that change from run to run are replaced by names.
func TestMessages(t *testing.T) {
	testutil.CheckLeaks(t)
	h := holdertest.Start(t)
	p1, p2 := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.2")
	for p2 == p1 { // the names below must tell them apart
		p2 = freePort(t, "127.0.0.2")
	}
	mustRun(t, h.Path, "listen", "web", "tcp:127.0.0.1:"+strconv.Itoa(p1))
	var replacer *strings.Replacer
	longest := regexp.MustCompile(`the longest ttl now is [0-9]+h0m0s`)

	nowhere := filepath.Join(testutil.ShortDir(t), "none.sock")
	replacer = strings.NewReplacer(h.Path, "SOCKET", nowhere, "NOWHERE", ":"+strconv.Itoa(p1), ":PORT1", ":"+strconv.Itoa(p2), ":PORT2")
	const showFD3 = `test -S /proc/self/fd/3 && echo "descriptor 3 is a socket; LISTEN_FDS=$LISTEN_FDS LISTEN_FDNAMES=$LISTEN_FDNAMES"`
	tests := []struct {
		name   string
		socket string // default: the holder's
		args   []string
	}{
		{name: "a global flag after the command", args: []string{"list", "--socket", "/run/x.sock"}},
		{name: "a duration without a unit", args: []string{"listen", "--ttl", "5", "web2", "tcp:127.0.0.1:0"}},
		{name: "a duration that is no duration", args: []string{"exec", "--wait", "soon", "web", "--", "true"}},
		{name: "a ttl past 2262", args: []string{"listen", "--ttl", "2200000h", "web2", "tcp:127.0.0.1:0"}},
		{name: "descriptor 3 not passed", args: []string{"store", "--fd", "3", "web2"}},
		{name: "exec with a held socket on another port", args: []string{"exec", "web=tcp:127.0.0.2:" + strconv.Itoa(p2), "--", "true"}},
		{name: "exec with a held socket of another network", args: []string{"exec", "web=tcp6:[::1]:0", "--", "true"}},
		{name: "exec --rebind moves it", args: []string{"exec", "--rebind", "web=tcp:127.0.0.2:" + strconv.Itoa(p2), "--", "true"}},
		{name: "and it is held on the new port", args: []string{"exec", "web=tcp:127.0.0.2:" + strconv.Itoa(p2), "--", "true"}},
		{name: "transfer to the same holder", args: []string{"transfer", "--to", h.Path}},
		{name: "exec with the holder down", socket: nowhere, args: []string{"exec", "web=tcp:127.0.0.1:0", "--", "sh", "-c", showFD3}},
		{name: "exec --fallback with the holder down", socket: nowhere, args: []string{"exec", "--fallback", "web=tcp:127.0.0.1:0", "--", "sh", "-c", showFD3}},
		{name: "exec --fallback without an address", socket: nowhere, args: []string{"exec", "--fallback", "web", "--", "true"}},
	}
	var out strings.Builder
	for _, tt := range tests {
		socket := h.Path
		if tt.socket != "" {
			socket = tt.socket
		}
		cmd := fdclientCmd(t, socket, tt.args...)
		r := wait(t, cmd)
		fmt.Fprintf(&out, "# %s\n$ fdclient --socket %s %s\nexit %d\n", tt.name, replacer.Replace(socket), replacer.Replace(strings.Join(tt.args, " ")), r.code)
		for _, s := range []struct{ name, text string }{{"stdout", r.stdout}, {"stderr", r.stderr}} {
			if s.text != "" {
				text := longest.ReplaceAllString(replacer.Replace(s.text), "the longest ttl now is Nh0m0s")
				fmt.Fprintf(&out, "%s:\n%s", s.name, text)
			}
		}
		out.WriteString("\n")
	}
	checkGolden(t, "messages.golden", []byte(out.String()))

	// The facts behind the last two: the entry moved.
	if got := entry(t, h.Path, "web")["address"]; got != "127.0.0.2:"+strconv.Itoa(p2) {
		t.Errorf("after --rebind web is at %v, want 127.0.0.2:%d", got, p2)
	}
}
