//go:build failpoints

package failpoint

import (
	"context"
	"testing"
	"time"
)

// TestHit runs with `go test -tags failpoints` (scripts/test.sh does).
func TestHit(t *testing.T) {
	points = map[string]*point{"p": {term: Term{Count: 2, Sleep: 50 * time.Millisecond}}}
	ctx := context.Background()
	for i, wantPause := range []bool{true, true, false} {
		start := time.Now()
		Hit(ctx, "p")
		if took := time.Since(start); (took >= 50*time.Millisecond) != wantPause {
			t.Errorf("pass %d took %s; want a pause: %v", i+1, took, wantPause)
		}
	}
	start := time.Now()
	Hit(ctx, "unknown")
	if took := time.Since(start); took >= 50*time.Millisecond {
		t.Errorf("an unset failpoint paused %s", took)
	}

	points = map[string]*point{"p": {term: Term{Count: -1, Sleep: time.Hour}}}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	Hit(cctx, "p")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Hit outlived its context: %s", took)
	}
}
