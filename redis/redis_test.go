package redis_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/idempotencytest"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/ratelimittest"
	"github.com/flashorder/flashorder/redis"
)

// client returns a client on the shared test Redis; every test uses keys under
// its own random prefix, so tests and runs never see each other's keys.
func client(t *testing.T) *goredis.Client {
	t.Helper()
	c, err := redis.OpenClient(withPoolTimeout(t, testenv.RedisURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// withPoolTimeout returns the Redis URL raw with pool_timeout=testTimeout:
// the pool's wait is bounded apart from the calls' context, since the
// suites' 100 concurrent calls may queue for a connection.
func withPoolTimeout(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_timeout", testTimeout.String())
	u.RawQuery = q.Encode()
	return u.String()
}

func prefix() string { return testenv.Unique("fotest") + ":" }

// testTimeout bounds each Redis call of the tests' stores and limiters: the
// machine is shared, and a slow moment is no failure here.
const testTimeout = 5 * time.Second

func newStore(c goredis.UniversalClient, prefix string) *redis.IdempotencyStore {
	s := redis.NewIdempotencyStore(c)
	s.Prefix = prefix
	s.Strict = true
	s.Timeout = testTimeout
	return s
}

// TestIdempotencyStore runs the conformance suite that every
// IdempotencyStore backend runs; its stores share one prefix, as orderd
// instances share one Redis.
func TestIdempotencyStore(t *testing.T) {
	c, p := client(t), prefix()
	idempotencytest.Run(t, idempotencytest.Backend{
		New: func(t *testing.T, retention time.Duration) flashorder.IdempotencyStore {
			s := newStore(c, p)
			s.Retention = retention
			return s
		},
		Shared: true,
	})
}

// TestIdempotencyStoreExpiry checks that a claim whose owner died expires,
// that a stale owner cannot overwrite the next claim, and that answers expire
// after the retention.
func TestIdempotencyStoreExpiry(t *testing.T) {
	ctx := context.Background()
	c, p := client(t), prefix()
	dead, next := newStore(c, p), newStore(c, p)
	dead.ClaimTTL, next.ClaimTTL = 200*time.Millisecond, time.Minute
	next.Retention = 300 * time.Millisecond

	if rec, _ := dead.Claim(ctx, "k", "fp-dead"); rec != nil {
		t.Fatal("fresh key held")
	}
	if rec, _ := next.Claim(ctx, "k", "fp-next"); rec == nil || rec.Fingerprint != "fp-dead" {
		t.Fatalf("live claim not seen: %+v", rec)
	}
	testenv.WaitFor(t, "the condition", 5*time.Second, func() bool { rec, _ := next.Claim(ctx, "k", "fp-next"); return rec == nil })
	// The first owner wakes up: its answer must not replace the new claim.
	if err := dead.Complete(ctx, "k", flashorder.Outcome{Order: &flashorder.Order{ID: "stale"}}); err != nil {
		t.Fatal(err)
	}
	if err := dead.Release(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := dead.Claim(ctx, "k", "fp-x"); rec == nil || rec.Fingerprint != "fp-next" || rec.Outcome != nil {
		t.Fatalf("a stale owner changed the next claim: %+v", rec)
	}
	if err := next.Complete(ctx, "k", flashorder.Outcome{Order: &flashorder.Order{ID: "fresh"}}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := dead.Claim(ctx, "k", "fp-x"); rec == nil || rec.Outcome == nil || rec.Outcome.Order.ID != "fresh" {
		t.Fatalf("answer not stored: %+v", rec)
	}
	// Past the retention the key is free again.
	testenv.WaitFor(t, "the condition", 5*time.Second, func() bool { rec, _ := dead.Claim(ctx, "k", "fp-y"); return rec == nil })
}

// TestIdempotencyStoreRedisDown points the store at a port where no Redis
// listens: a strict store reports the error, the default one grants the claim
// so that the database guard decides.
func TestIdempotencyStoreRedisDown(t *testing.T) {
	ctx := context.Background()
	c, err := redis.OpenClient("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	strict := newStore(c, prefix())
	if _, err := strict.Claim(ctx, "k", "fp"); err == nil {
		t.Fatal("strict claim without Redis succeeded")
	}
	lenient := redis.NewIdempotencyStore(c)
	if rec, err := lenient.Claim(ctx, "k", "fp"); rec != nil || err != nil {
		t.Fatalf("fallback claim: %+v %v", rec, err)
	}
	// A second request for the same key in this process waits for the first.
	if rec, err := lenient.Claim(ctx, "k", "fp"); err != nil || rec == nil || rec.Outcome != nil {
		t.Fatalf("local duplicate during fallback: %+v %v", rec, err)
	}
	if err := lenient.Complete(ctx, "k", flashorder.Outcome{Order: &flashorder.Order{ID: "o"}}); err == nil {
		t.Fatal("complete without Redis succeeded")
	}
	if rec, err := lenient.Claim(ctx, "k", "fp"); rec != nil || err != nil {
		t.Fatalf("claim after the first finished: %+v %v", rec, err)
	}
	if lenient.Fallbacks() != 2 {
		t.Fatalf("%d fallbacks, want 2", lenient.Fallbacks())
	}
}

// TestRateLimiter runs the conformance suite that every RateLimiter backend
// runs; its limiters share one prefix, as orderd instances share one Redis.
func TestRateLimiter(t *testing.T) {
	c, p := client(t), prefix()
	ratelimittest.Run(t, ratelimittest.Backend{
		New: func(t *testing.T, rate int, period time.Duration, burst int) flashorder.RateLimiter {
			l := redis.NewRateLimiter(c, rate, period, burst)
			l.Prefix, l.Timeout = p, testTimeout
			return l
		},
		Shared: true,
	})
}

func TestSoldOutCache(t *testing.T) {
	ctx := context.Background()
	c := redis.NewSoldOutCache(client(t))
	c.Prefix = prefix()
	if sold, err := c.SoldOut(ctx, "s1"); sold || err != nil {
		t.Fatalf("unmarked: %v %v", sold, err)
	}
	if err := c.MarkSoldOut(ctx, "s1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkSoldOut(ctx, "s2", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if sold, _ := c.SoldOut(ctx, "s1"); !sold {
		t.Fatal("mark not seen")
	}
	if err := c.ClearSoldOut(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if sold, _ := c.SoldOut(ctx, "s1"); sold {
		t.Fatal("cleared mark still seen")
	}
	testenv.WaitFor(t, "the condition", 5*time.Second, func() bool { sold, _ := c.SoldOut(ctx, "s2"); return !sold })
}

// TestIdempotencyStoreReadsLegacyAnswers: an answer stored by a version
// before outcomes (an HTTP status and body) is still replayed, as an order
// or a refusal, during a rolling upgrade.
func TestIdempotencyStoreReadsLegacyAnswers(t *testing.T) {
	ctx := context.Background()
	c, p := client(t), prefix()
	s := newStore(c, p)
	order := `{"id":"o-1","user_id":"u1","status":"created","items":[{"sku":"a","quantity":1,"price_cents":5}],"total_cents":5,"created_at":"2026-01-02T03:04:05.123456Z"}`
	c.HSet(ctx, p+"ok", "f", "fp", "s", "201", "b", order, "l", "/api/v1/orders/o-1")
	c.HSet(ctx, p+"no", "f", "fp", "s", "409", "b", `{"error":{"code":"sold_out","message":"a is sold out"}}`, "l", "")
	c.HSet(ctx, p+"bad", "f", "fp", "s", "409", "b", `not json`, "l", "")
	rec, err := s.Claim(ctx, "ok", "fp")
	if err != nil || rec == nil || rec.Outcome == nil || rec.Outcome.Order == nil || rec.Outcome.Order.ID != "o-1" ||
		rec.Outcome.Order.Items[0].PriceCents != 5 || rec.Outcome.Order.CreatedAt.Nanosecond() != 123456000 {
		t.Fatalf("legacy order: %+v %v", rec, err)
	}
	rec, err = s.Claim(ctx, "no", "fp")
	if err != nil || rec == nil || rec.Outcome == nil || rec.Outcome.Refusal == nil || *rec.Outcome.Refusal != (flashorder.Refusal{Code: "sold_out", Message: "a is sold out"}) {
		t.Fatalf("legacy refusal: %+v %v", rec, err)
	}
	if rec, err := s.Claim(ctx, "bad", "fp"); err == nil {
		t.Fatalf("a malformed stored answer was read: %+v", rec)
	}
}
