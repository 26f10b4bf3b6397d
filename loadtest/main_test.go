package loadtest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a run leaves goroutines behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
