package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Tool returns the path of the command name (such as chromium or promtool).
// When it is not installed the test is skipped, or fails under
// FLASHORDER_REQUIRE_SERVICES=1: scripts/test.sh installs the tools its tests
// need, so there a missing one is a broken setup, not a reason to pass.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("FLASHORDER_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s is not installed: scripts/test.sh installs it (apt-get)", name)
	}
	t.Skipf("%s is not installed: this run does not cover it (scripts/test.sh installs it)", name)
	return ""
}
