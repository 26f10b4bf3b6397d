package orderd

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"
)

// TestUsageNamesVariables checks that orderd -h shows every flag next to its
// ORDERD_* variable, and exits cleanly.
func TestUsageNamesVariables(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-h"}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("orderd -h: %v", err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(out.String(), "\n") {
		lines[strings.Join(strings.Fields(l), " ")] = true
	}
	FlagSet(&Config{}, io.Discard).VisitAll(func(f *flag.Flag) {
		typ, _ := flag.UnquoteUsage(f)
		want := strings.TrimSpace("--" + f.Name + " " + typ + " " + EnvName(f.Name))
		if !lines[strings.Join(strings.Fields(want), " ")] {
			t.Errorf("orderd -h has no line %q", want)
		}
	})
}

// TestVersion checks that orderd --version prints the build and starts
// nothing (no listener, no database).
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--version"}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("orderd --version: %v", err)
	}
	if got := out.String(); !strings.HasPrefix(got, "orderd ") || !strings.Contains(got, " revision ") || !strings.Contains(got, "go1.") {
		t.Errorf("orderd --version printed %q", got)
	}
}
