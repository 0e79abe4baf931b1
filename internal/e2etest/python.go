package e2etest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fdholder/fdholder/internal/testutil"
)

// pythons caches, per module, the interpreter found for it.
var pythons sync.Map // module -> func() (string, string)

// NeedPython returns an interpreter that can import module: $FDHOLDER_PYTHON,
// then Debian's /usr/bin/python3, then python3 on PATH (which may be a pyenv
// one without Debian's packages). When none can, it skips the test (fails
// it under FDHOLDER_REQUIRE_PEERS), naming pkg, the Debian package to
// install.
func NeedPython(t testing.TB, module, pkg string) string {
	t.Helper()
	find, _ := pythons.LoadOrStore(module, sync.OnceValues(func() (string, string) { return findPython(module) }))
	py, tried := find.(func() (string, string))()
	testutil.NeedPeer(t, py != "", "no python3 can import %s (apt-get install %s, or set FDHOLDER_PYTHON); tried %s", module, pkg, tried)
	return py
}

// findPython returns the first interpreter that can import module, or ""
// and what was tried.
func findPython(module string) (string, string) {
	var candidates []string
	if p := os.Getenv("FDHOLDER_PYTHON"); p != "" {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3")
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	var tried []string
	for _, py := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, py, "-c", "import "+module).CombinedOutput()
		cancel()
		if err == nil {
			return py, ""
		}
		tried = append(tried, fmt.Sprintf("%s: %v %s", py, err, strings.TrimSpace(string(out))))
	}
	return "", strings.Join(tried, "; ")
}
