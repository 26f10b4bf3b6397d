package buildinfo_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/internal/buildinfo"
)

// TestRead checks that a test binary reports a version, a revision and the
// toolchain, never empty strings (the metric's labels and --version need all
// three).
func TestRead(t *testing.T) {
	i := buildinfo.Read()
	if i.Version == "" || i.Revision == "" {
		t.Errorf("Read() = %+v, want no empty field", i)
	}
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	if s := i.String(); !strings.Contains(s, i.Version) || !strings.HasSuffix(s, runtime.Version()) {
		t.Errorf("String() = %q", s)
	}
}
