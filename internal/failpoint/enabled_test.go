//go:build failpoints

package failpoint

import (
	"context"
	"errors"
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

// TestFail runs with `go test -tags failpoints`: error() makes Fail return
// ErrInjected on its counted passes, and Hit passes it by.
func TestFail(t *testing.T) {
	points = map[string]*point{"f": {term: Term{Count: 2, Fail: true}}}
	ctx := context.Background()
	if err := Fail(ctx, "f"); !errors.Is(err, ErrInjected) {
		t.Fatalf("first pass: %v, want ErrInjected", err)
	}
	Hit(ctx, "f") // the second pass, through Hit: no error, no pause
	if err := Fail(ctx, "f"); err != nil {
		t.Fatalf("third pass: %v, want nil", err)
	}
	if err := Fail(ctx, "unknown"); err != nil {
		t.Fatalf("an unset failpoint: %v", err)
	}
}
