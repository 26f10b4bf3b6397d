package orderd

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReadmeConfigurationTable keeps README.md's configuration table true:
// one row per flag, in any order, with the flag's variable and default.
func TestReadmeConfigurationTable(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `--([a-z-]+)` \\| `([A-Z_]+)` \\| ([^|]*) \\|")
	documented := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = [2]string{m[2], strings.TrimSpace(m[3])}
	}
	var cfg Config
	fs := FlagSet(&cfg, io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		doc, ok := documented[f.Name]
		if !ok {
			t.Errorf("README's configuration table has no row for --%s", f.Name)
			return
		}
		delete(documented, f.Name)
		if doc[0] != EnvName(f.Name) {
			t.Errorf("--%s: README names variable %s, want %s", f.Name, doc[0], EnvName(f.Name))
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
