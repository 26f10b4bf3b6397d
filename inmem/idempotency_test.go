package inmem_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/idempotencytest"
	"github.com/flashorder/flashorder/inmem"
)

// TestIdempotencyStore runs the conformance suite that every
// IdempotencyStore backend runs.
func TestIdempotencyStore(t *testing.T) {
	idempotencytest.Run(t, idempotencytest.Backend{
		New: func(t *testing.T, retention time.Duration) flashorder.IdempotencyStore {
			s := inmem.NewIdempotencyStore()
			s.Retention = retention
			return s
		},
	})
}

// TestIdempotencyStoreBound checks that the store holds at most MaxKeys keys
// and drops the oldest first.
func TestIdempotencyStoreBound(t *testing.T) {
	ctx := context.Background()
	s := inmem.NewIdempotencyStore()
	s.MaxKeys = 64 * 4 // 4 a shard
	const n = 10_000
	for i := range n {
		key := fmt.Sprintf("k-%d", i)
		if rec, err := s.Claim(ctx, key, "fp"); rec != nil || err != nil {
			t.Fatalf("claim %s: %v %v", key, rec, err)
		}
		if i%3 == 0 {
			_ = s.Complete(ctx, key, flashorder.Outcome{Order: &flashorder.Order{ID: key}})
		} else if i%3 == 1 {
			_ = s.Release(ctx, key)
		}
	}
	held := 0
	for i := range n {
		// A claim of a held key returns its record; of a dropped one,
		// nil (and claims it anew, so count from the newest down).
		key := fmt.Sprintf("k-%d", n-1-i)
		if rec, _ := s.Claim(ctx, key, "fp"); rec != nil {
			held++
			// A shard keeps its 4 newest keys (released ones are
			// gone): 2,560 newer keys leave ~27 in each shard, so a
			// key that old is dropped but with odds under 1e-8.
			if i >= 64*40 {
				t.Fatalf("%s, among the oldest, is still held", key)
			}
		}
	}
	if held == 0 || held > s.MaxKeys {
		t.Fatalf("%d keys held, want 1..%d", held, s.MaxKeys)
	}
}
