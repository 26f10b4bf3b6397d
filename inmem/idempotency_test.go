package inmem_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/inmem"
)

func TestIdempotencyStore(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	s := inmem.NewIdempotencyStore()
	s.Retention = time.Hour
	s.Now = func() time.Time { return now }

	if rec, err := s.Claim(ctx, "k", "fp1"); rec != nil || err != nil {
		t.Fatalf("first claim: %v %v", rec, err)
	}
	if rec, _ := s.Claim(ctx, "k", "fp1"); rec == nil || rec.Outcome != nil || rec.Fingerprint != "fp1" {
		t.Fatalf("claim while in flight: %+v", rec)
	}
	if err := s.Complete(ctx, "k", flashorder.Outcome{Order: &flashorder.Order{ID: "x"}}); err != nil {
		t.Fatal(err)
	}
	rec, _ := s.Claim(ctx, "k", "fp2")
	if rec == nil || rec.Fingerprint != "fp1" || rec.Outcome == nil || rec.Outcome.Order.ID != "x" {
		t.Fatalf("claim after completion: %+v", rec)
	}
	// Release never drops a completed answer.
	_ = s.Release(ctx, "k")
	if rec, _ := s.Claim(ctx, "k", "fp1"); rec == nil || rec.Outcome == nil {
		t.Fatal("release dropped a completed answer")
	}
	// Past the retention, the key is free again.
	now = now.Add(time.Hour + time.Second)
	if rec, _ := s.Claim(ctx, "k", "fp3"); rec != nil {
		t.Fatalf("expired answer still held: %+v", rec)
	}
	// A released in-flight claim frees the key.
	_ = s.Release(ctx, "k")
	if rec, _ := s.Claim(ctx, "k", "fp4"); rec != nil {
		t.Fatalf("released claim still held: %+v", rec)
	}
}

func TestIdempotencyStoreConcurrentClaims(t *testing.T) {
	s := inmem.NewIdempotencyStore()
	var winners atomic.Int32
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rec, _ := s.Claim(context.Background(), "same", "fp"); rec == nil {
				winners.Add(1)
			}
		}()
	}
	wg.Wait()
	if winners.Load() != 1 {
		t.Fatalf("%d goroutines claimed one key", winners.Load())
	}
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
