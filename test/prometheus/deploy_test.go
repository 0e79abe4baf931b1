package prometheus

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/fdholder/fdholder/internal/testutil"
)

// deployDir returns deploy/prometheus.
func deployDir(t testing.TB) string {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "deploy", "prometheus")
}

func needPromtool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	testutil.NeedPeer(t, err == nil, "promtool (apt-get install prometheus)")
	return p
}

// TestPromtool checks the scrape configuration (and the rule files it
// loads) and the alert rules, and runs the rules' unit tests.
func TestPromtool(t *testing.T) {
	promtool := needPromtool(t)
	dir := deployDir(t)
	for _, tt := range []struct {
		name string
		args []string
	}{
		{name: "check config", args: []string{"check", "config", "prometheus.yml"}},
		{name: "check rules", args: []string{"check", "rules", "alerts.yml"}},
		{name: "test rules", args: []string{"test", "rules", "alerts_test.yml"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(promtool, tt.args...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("promtool %v: %v\n%s", tt.args, err, out)
			}
		})
	}
}

// metricName matches the names of fdholderd's own metrics and of the
// process metrics it serves.
var metricName = regexp.MustCompile(`\b(?:fdholder|process)_[a-z_]+[a-z]\b`)

// isDocumented accepts a histogram's series names by its family name.
func isDocumented(docs []string, name string) bool {
	for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
		if base, ok := cutSuffix(name, suffix); ok && slices.Contains(docs, base) {
			return true
		}
	}
	return false
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) < len(suffix) || s[len(s)-len(suffix):] != suffix {
		return "", false
	}
	return s[:len(s)-len(suffix)], true
}

// TestDashboardAndRulesUseDocumentedMetrics: the dashboard is valid JSON
// with unique panel ids, and it and the alerts query only metrics that
// docs/operations.md lists (which internal/metrics's tests hold to what
// fdholderd serves).
func TestDashboardAndRulesUseDocumentedMetrics(t *testing.T) {
	docs := testutil.DocumentedMetrics(t)
	dir := deployDir(t)
	raw, err := os.ReadFile(filepath.Join(dir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	ids := map[int]bool{}
	var exprs []string
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, want := range []string{"fdholder_listener_queued_connections", "fdholder_requests_total", "fdholder_refusals_total"} {
		if !slices.ContainsFunc(exprs, func(e string) bool { return regexp.MustCompile(`\b` + want + `\b`).MatchString(e) }) {
			t.Errorf("no panel shows %s", want)
		}
	}
	rules, err := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range append(exprs, string(rules)) {
		for _, name := range metricName.FindAllString(src, -1) {
			if !isDocumented(docs, name) {
				t.Errorf("%s is queried but not in docs/operations.md", name)
			}
		}
	}
}
