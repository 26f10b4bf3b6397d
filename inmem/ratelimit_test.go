package inmem_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashorder/flashorder/inmem"
)

func TestRateLimiter(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	l := inmem.NewRateLimiter(2, time.Second, 4, 0)
	l.Now = func() time.Time { return now }
	for i := range 4 {
		if ok, _, err := l.Allow(ctx, "u1"); !ok || err != nil {
			t.Fatalf("request %d within the burst: %v %v", i, ok, err)
		}
	}
	ok, retry, _ := l.Allow(ctx, "u1")
	if ok || retry != 500*time.Millisecond {
		t.Fatalf("past the burst: ok=%v retry=%v, want a refusal for 500ms", ok, retry)
	}
	if ok, _, _ := l.Allow(ctx, "u2"); !ok {
		t.Fatal("another user was limited")
	}
	// A refusal takes nothing from the budget: after Retry-After, one passes.
	now = now.Add(retry)
	if ok, _, _ := l.Allow(ctx, "u1"); !ok {
		t.Fatal("refused after Retry-After")
	}
	if ok, _, _ := l.Allow(ctx, "u1"); ok {
		t.Fatal("a second request passed at 2/s")
	}
}

// TestRateLimiterBounded checks that memory stays bounded: many users, at most
// the given number tracked; the least recently seen are forgotten.
func TestRateLimiterBounded(t *testing.T) {
	ctx := context.Background()
	l := inmem.NewRateLimiter(1, time.Hour, 1, 128)
	for i := range 10_000 {
		if ok, _, _ := l.Allow(ctx, fmt.Sprintf("user-%d", i)); !ok {
			t.Fatalf("user %d refused on first request", i)
		}
	}
	if n := l.Users(); n > 128 || n < 64 {
		t.Fatalf("%d users tracked, want at most 128", n)
	}
	// A recent user is still limited.
	if ok, _, _ := l.Allow(ctx, "user-9999"); ok {
		t.Fatal("a recent user's bucket was forgotten")
	}
}
