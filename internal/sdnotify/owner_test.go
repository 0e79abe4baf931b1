package sdnotify

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// TestOneWayToNotifySocket keeps Socket.Send the module's one way to
// $NOTIFY_SOCKET: no program file calls go-systemd's daemon.SdNotify,
// which would be a second sender with its own socket, timeouts and errors.
func TestOneWayToNotifySocket(t *testing.T) {
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		var local string
		for _, im := range f.Imports {
			if p, _ := strconv.Unquote(im.Path.Value); p == "github.com/coreos/go-systemd/v22/daemon" {
				local = "daemon"
				if im.Name != nil {
					local = im.Name.Name
				}
			}
		}
		if local == "" {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "SdNotify" {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == local {
					t.Errorf("%s: %s.SdNotify: send through sdnotify.Socket instead", fset.Position(sel.Pos()), local)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
