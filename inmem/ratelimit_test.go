package inmem_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/ratelimittest"
)

// TestRateLimiter runs the conformance suite that every RateLimiter backend
// runs.
func TestRateLimiter(t *testing.T) {
	ratelimittest.Run(t, ratelimittest.Backend{
		New: func(t *testing.T, rate int, period time.Duration, burst int) flashorder.RateLimiter {
			return inmem.NewRateLimiter(rate, period, burst, 0)
		},
	})
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
