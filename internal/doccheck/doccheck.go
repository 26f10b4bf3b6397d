// Package doccheck keeps what the repository tells its readers true to the
// code: README.md's first screen and configuration table, the links between
// the documents, the packaging (Dockerfile, docker-compose.yml, the systemd
// unit) and the operations files (Prometheus alerts and their promtool unit
// tests, the Grafana dashboard). Its tests read those files; the helpers
// here find them from any package's directory.
package doccheck

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// Path returns the path of rel, a slash-separated path from the repository
// root (the directory of go.mod), from the directory the test runs in.
func Path(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, filepath.FromSlash(rel))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("doccheck: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// Read returns the contents of rel (see Path), failing t when it cannot be
// read.
func Read(t testing.TB, rel string) string {
	t.Helper()
	data, err := os.ReadFile(Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// metricRow is a row of docs/OPERATE.md's metrics table: name, then type.
var metricRow = regexp.MustCompile("(?m)^\\| `(flashorder_[a-z_]+)` \\| ([a-z]+) \\|")

// Metrics returns docs/OPERATE.md's metrics table: each documented metric's
// name to its type (counter, gauge, histogram).
func Metrics(t testing.TB) map[string]string { return metricTable(t, "docs/OPERATE.md") }

// EventMetrics returns docs/EVENTS.md's metrics table: the metrics an orderd
// exports only with --events, name to type.
func EventMetrics(t testing.TB) map[string]string { return metricTable(t, "docs/EVENTS.md") }

func metricTable(t testing.TB, rel string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range metricRow.FindAllStringSubmatch(Read(t, rel), -1) {
		out[m[1]] = m[2]
	}
	return out
}
