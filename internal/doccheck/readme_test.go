package doccheck_test

import (
	"flag"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/doccheck"
	"github.com/flashorder/flashorder/internal/orderd"
)

// TestReadmeFirstScreen keeps the README's promise to a newcomer: within its
// first 30 lines, the demo, orderd on its embedded default, and the test
// command.
func TestReadmeFirstScreen(t *testing.T) {
	lines := strings.Split(doccheck.Read(t, "README.md"), "\n")
	first := strings.Join(lines[:min(30, len(lines))], "\n")
	for _, want := range []string{"go run ./cmd/orderbench demo", "go run ./cmd/orderd ", "./scripts/test.sh"} {
		if !strings.Contains(first, want) {
			t.Errorf("the README's first 30 lines lack %q", want)
		}
	}
}

// TestReadmeConfigurationTable keeps README.md's configuration table true:
// one row per flag, in any order, with the flag's variable and default.
func TestReadmeConfigurationTable(t *testing.T) {
	readme := doccheck.Read(t, "README.md")
	row := regexp.MustCompile("(?m)^\\| `--([a-z-]+)` \\| `([A-Z_]+)` \\| ([^|]*) \\|")
	documented := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(readme, -1) {
		documented[m[1]] = [2]string{m[2], strings.TrimSpace(m[3])}
	}
	var cfg orderd.Config
	fs := orderd.FlagSet(&cfg, io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		doc, ok := documented[f.Name]
		if !ok {
			t.Errorf("README's configuration table has no row for --%s", f.Name)
			return
		}
		delete(documented, f.Name)
		if doc[0] != orderd.EnvName(f.Name) {
			t.Errorf("--%s: README names variable %s, want %s", f.Name, doc[0], orderd.EnvName(f.Name))
		}
		// The default is the cell, or its first `code` span when the cell
		// explains it further: "`0` (the rate's N)".
		def := doc[1]
		if parts := strings.SplitN(def, "`", 3); len(parts) == 3 && parts[0] == "" {
			def = parts[1]
		}
		switch {
		case f.DefValue == "" && (strings.HasPrefix(def, "empty") || def == "generated"):
		case sameDuration(def, f.DefValue):
		case def != f.DefValue:
			t.Errorf("--%s: README says default %s, orderd has %q", f.Name, doc[1], f.DefValue)
		}
	})
	for name := range documented {
		t.Errorf("README documents --%s, which orderd does not have", name)
	}
}

func sameDuration(a, b string) bool {
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	return errA == nil && errB == nil && da == db
}
