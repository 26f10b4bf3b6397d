package doccheck_test

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/flashorder/flashorder/internal/doccheck"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// metricRE finds the flashorder metrics a PromQL expression names.
var metricRE = regexp.MustCompile(`flashorder_[a-z_]+`)

// opsExprs returns the PromQL expressions of deploy/prometheus/alerts.yml and
// of the Grafana dashboard's panels, by where they are.
func opsExprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal([]byte(doccheck.Read(t, "deploy/prometheus/alerts.yml")), &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(doccheck.Read(t, "deploy/grafana/flashorder.json")), &dash); err != nil {
		t.Fatalf("flashorder.json: %v", err)
	}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			out["panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d expressions in the alerts and the dashboard", len(out))
	}
	return out
}

// TestOpsMetricsExist checks the alert rules and the Grafana dashboard
// against docs/OPERATE.md's metrics table, which internal/orderd's
// TestMetricsMoveWithOrders keeps equal to /metrics, and docs/EVENTS.md's
// (the metrics of --events): every metric they name exists (a histogram's
// _bucket, _sum and _count included), and the dashboard shows every metric.
func TestOpsMetricsExist(t *testing.T) {
	documented := doccheck.Metrics(t)
	events := doccheck.EventMetrics(t)
	if len(events) < 7 {
		t.Errorf("docs/EVENTS.md's metrics table lists %d metrics", len(events))
	}
	for name, typ := range events {
		documented[name] = typ
	}
	onDashboard := map[string]bool{}
	for where, expr := range opsExprs(t) {
		for _, name := range metricRE.FindAllString(expr, -1) {
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && documented[b] == "histogram" {
					base = b
				}
			}
			if _, ok := documented[base]; !ok {
				t.Errorf("%s names %s, which orderd does not export (docs/OPERATE.md)", where, name)
			}
			if strings.HasPrefix(where, "panel ") {
				onDashboard[base] = true
			}
		}
	}
	for name := range documented {
		if !onDashboard[name] {
			t.Errorf("the Grafana dashboard does not show %s", name)
		}
	}
}

// TestOpsPromtool checks the Prometheus files with promtool: the rules are
// valid, their unit tests (alerts_test.yml) pass, and the compose file's
// Prometheus configuration loads them.
func TestOpsPromtool(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = doccheck.Path(t, "deploy/prometheus")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
