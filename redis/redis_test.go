package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/redis"
)

// client returns a client on the shared test Redis; every test uses keys under
// its own random prefix, so tests and runs never see each other's keys.
func client(t *testing.T) *goredis.Client {
	t.Helper()
	u := testenv.RedisURL(t)
	c, err := redis.OpenClient(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func prefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "fotest:" + hex.EncodeToString(b) + ":"
}

func newStore(c goredis.UniversalClient, prefix string) *redis.IdempotencyStore {
	s := redis.NewIdempotencyStore(c)
	s.Prefix = prefix
	s.Strict = true
	s.Timeout = time.Second // the machine is shared; a slow moment is no failure here
	return s
}

func TestIdempotencyStore(t *testing.T) {
	ctx := context.Background()
	s := newStore(client(t), prefix())

	if rec, err := s.Claim(ctx, "k", "fp1"); rec != nil || err != nil {
		t.Fatalf("first claim: %+v %v", rec, err)
	}
	if rec, err := s.Claim(ctx, "k", "fp2"); err != nil || rec == nil || rec.Outcome != nil || rec.Fingerprint != "fp1" {
		t.Fatalf("claim while in flight: %+v %v", rec, err)
	}
	order := &flashorder.Order{ID: "o-1", UserID: "u\x00\u00ff", Status: flashorder.StatusCreated, TotalCents: 250,
		Items:     []flashorder.OrderItem{{SKU: "sku-1", Quantity: 2, PriceCents: 125}},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)}
	if err := s.Complete(ctx, "k", flashorder.Outcome{Order: order}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Claim(ctx, "k", "fp1")
	if err != nil || rec == nil || rec.Fingerprint != "fp1" || rec.Outcome == nil || rec.Outcome.Refusal != nil ||
		!reflect.DeepEqual(rec.Outcome.Order, order) {
		t.Fatalf("claim after completion: %+v %v", rec, err)
	}
	// A stored refusal comes back with its code and message.
	if rec, _ := s.Claim(ctx, "r", "fp"); rec != nil {
		t.Fatal("fresh key held")
	}
	refusal := &flashorder.Refusal{Code: flashorder.ESOLDOUT, Message: "sku-1 is sold out"}
	if err := s.Complete(ctx, "r", flashorder.Outcome{Refusal: refusal}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.Claim(ctx, "r", "fp"); rec == nil || rec.Outcome == nil || rec.Outcome.Order != nil ||
		!reflect.DeepEqual(rec.Outcome.Refusal, refusal) {
		t.Fatalf("stored refusal: %+v", rec)
	}
	// Release drops an in-flight claim but never a stored answer.
	if err := s.Release(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.Claim(ctx, "k", "fp1"); rec == nil || rec.Outcome == nil {
		t.Fatal("release dropped a stored outcome")
	}
	if rec, _ := s.Claim(ctx, "x", "fp"); rec != nil {
		t.Fatal("fresh key held")
	}
	if err := s.Release(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.Claim(ctx, "x", "fp9"); rec != nil {
		t.Fatalf("released key still held: %+v", rec)
	}
}

// TestIdempotencyStoreConcurrentClaims claims one key from 100 goroutines
// spread over four stores, as four orderd instances would: one wins.
func TestIdempotencyStoreConcurrentClaims(t *testing.T) {
	c, p := client(t), prefix()
	stores := make([]*redis.IdempotencyStore, 4)
	for i := range stores {
		stores[i] = newStore(c, p)
	}
	var winners, held atomic.Int32
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, err := stores[i%4].Claim(context.Background(), "same", "fp")
			switch {
			case err != nil:
				t.Error(err)
			case rec == nil:
				winners.Add(1)
			case rec.Fingerprint == "fp" && rec.Outcome == nil:
				held.Add(1)
			}
		}()
	}
	wg.Wait()
	if winners.Load() != 1 || held.Load() != 99 {
		t.Fatalf("%d winners, %d saw the claim; want 1 and 99", winners.Load(), held.Load())
	}
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

func TestRateLimiter(t *testing.T) {
	ctx := context.Background()
	c, p := client(t), prefix()
	// Two limiters on one Redis, as two instances: they share each user's budget.
	a, b := redis.NewRateLimiter(c, 3, time.Second, 3), redis.NewRateLimiter(c, 3, time.Second, 3)
	a.Prefix, b.Prefix = p, p
	for i := range 3 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if ok, _, err := l.Allow(ctx, "u1"); !ok || err != nil {
			t.Fatalf("request %d within the burst: %v %v", i, ok, err)
		}
	}
	ok, retry, err := b.Allow(ctx, "u1")
	if ok || err != nil || retry <= 0 || retry > time.Second {
		t.Fatalf("past the burst: ok=%v retry=%v err=%v", ok, retry, err)
	}
	if ok, _, _ := a.Allow(ctx, "u2"); !ok {
		t.Fatal("another user was limited")
	}
	time.Sleep(retry)
	if ok, _, err := a.Allow(ctx, "u1"); !ok || err != nil {
		t.Fatalf("after Retry-After: %v %v", ok, err)
	}
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

// TestIdempotencyStoreNotStarted checks that a stored not_started refusal
// lasts until its sale starts, and then the key can be claimed again.
func TestIdempotencyStoreNotStarted(t *testing.T) {
	s := newStore(client(t), prefix())
	ctx := context.Background()
	start := time.Now().Add(300 * time.Millisecond).UTC()
	if rec, err := s.Claim(ctx, "early", "fp"); rec != nil || err != nil {
		t.Fatalf("first claim: %+v %v", rec, err)
	}
	refusal := &flashorder.Refusal{Code: flashorder.ENOTSTARTED, Message: "not yet", StartsAt: &start}
	if err := s.Complete(ctx, "early", flashorder.Outcome{Refusal: refusal}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Claim(ctx, "early", "fp")
	if err != nil || rec == nil || rec.Outcome == nil || rec.Outcome.Refusal == nil || rec.Outcome.Refusal.StartsAt == nil ||
		!rec.Outcome.Refusal.StartsAt.Equal(start) {
		t.Fatalf("before the start: %+v %v", rec, err)
	}
	testenv.WaitFor(t, "the key free at the start", 5*time.Second, func() bool {
		rec, err := s.Claim(ctx, "early", "fp")
		return err == nil && rec == nil
	})
}
