package testutil

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// metricRow is a row of the metrics table of docs/operations.md: it starts
// with the metric's name in backquotes.
var metricRow = regexp.MustCompile("(?m)^\\| `((?:fdholder|process)_[a-z_]+)`(?:, `((?:fdholder|process)_[a-z_]+)`)?")

// DocumentedMetrics returns the names of the metrics docs/operations.md
// lists (fdholderd's own, fdholder_*, and the process_* ones it names), so
// that tests hold the docs, what fdholderd serves and what
// deploy/prometheus queries to one list.
func DocumentedMetrics(t testing.TB) []string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range metricRow.FindAllStringSubmatch(string(doc), -1) {
		for _, name := range m[1:] {
			if name != "" {
				names = append(names, name)
			}
		}
	}
	if len(names) < 10 {
		t.Fatalf("docs/operations.md lists only these metrics: %v", names)
	}
	return names
}
