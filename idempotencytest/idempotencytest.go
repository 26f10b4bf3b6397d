// Package idempotencytest is the one conformance suite that every
// flashorder.IdempotencyStore backend runs (in-process and Redis), the way
// package locktest serves the Lockers: an outcome stored and replayed with
// its fingerprint, order and refusal intact; one winner among concurrent
// claims of a key; Release dropping a claim but never an outcome; outcomes
// kept for the retention, and a not_started refusal only until its sale
// starts (flashorder.Outcome.Retention); and input that a caller should not
// send (keys never claimed, keys that differ only slightly) changing nothing
// it should not.
package idempotencytest

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// Backend describes an IdempotencyStore backend to the suite.
type Backend struct {
	// New returns a store that keeps outcomes for retention. The suite uses
	// keys that no other test or run uses, so stores of one backend may
	// share a key space.
	New func(t *testing.T, retention time.Duration) flashorder.IdempotencyStore
	// Shared reports that the stores New returns share their keys, as
	// orderd instances on one Redis do: the suite then spreads concurrent
	// claims over several stores. A per-process store (inmem) is not
	// shared, and the suite claims through one.
	Shared bool
}

// Run runs the conformance suite against b. When the suite ends, every
// goroutine it started must be gone.
func Run(t *testing.T, b Backend) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	t.Run("StoreAndReplay", func(t *testing.T) { testStoreAndReplay(t, b) })
	t.Run("Release", func(t *testing.T) { testRelease(t, b) })
	t.Run("ConcurrentClaims", func(t *testing.T) { testConcurrentClaims(t, b) })
	t.Run("Retention", func(t *testing.T) { testRetention(t, b) })
	t.Run("NotStartedUntilStart", func(t *testing.T) { testNotStarted(t, b) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, b) })
}

// longRetention keeps every outcome for longer than any subtest runs.
const longRetention = time.Hour

// shortRetention is the retention of the expiry subtests: long enough that
// a replay right after Complete still sees the outcome on a busy machine.
const shortRetention = time.Second

// expiryWait bounds the wait for an outcome to expire.
const expiryWait = 10 * time.Second

func claim(t *testing.T, s flashorder.IdempotencyStore, key, fp string) *flashorder.IdempotencyRecord {
	t.Helper()
	rec, err := s.Claim(context.Background(), key, fp)
	if err != nil {
		t.Fatalf("claim %q: %v", key, err)
	}
	return rec
}

func mustClaimFree(t *testing.T, s flashorder.IdempotencyStore, key, fp string) {
	t.Helper()
	if rec := claim(t, s, key, fp); rec != nil {
		t.Fatalf("claim of the free key %q: %+v, want it granted", key, rec)
	}
}

func complete(t *testing.T, s flashorder.IdempotencyStore, key string, o flashorder.Outcome) {
	t.Helper()
	if err := s.Complete(context.Background(), key, o); err != nil {
		t.Fatalf("complete %q: %v", key, err)
	}
}

func release(t *testing.T, s flashorder.IdempotencyStore, key string) {
	t.Helper()
	if err := s.Release(context.Background(), key); err != nil {
		t.Fatalf("release %q: %v", key, err)
	}
}

// testStoreAndReplay: a claimed key is held with its fingerprint while in
// flight; once completed, every later claim (whatever its fingerprint)
// returns the first fingerprint and the outcome as stored: an order with
// every field, or a refusal with its code and message.
func testStoreAndReplay(t *testing.T, b Backend) {
	s := b.New(t, longRetention)
	k := testenv.Unique("k")
	mustClaimFree(t, s, k, "fp1")
	if rec := claim(t, s, k, "fp2"); rec == nil || rec.Outcome != nil || rec.Fingerprint != "fp1" {
		t.Fatalf("claim while in flight: %+v, want fp1 in flight", rec)
	}
	order := &flashorder.Order{ID: "o-1", UserID: "u\x00\u00ff", Status: flashorder.StatusCreated, TotalCents: 250,
		Items:     []flashorder.OrderItem{{SKU: "sku-1", Quantity: 2, PriceCents: 125}},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)}
	complete(t, s, k, flashorder.Outcome{Order: order})
	for _, fp := range []string{"fp1", "fp2"} {
		rec := claim(t, s, k, fp)
		if rec == nil || rec.Fingerprint != "fp1" || rec.Outcome == nil || rec.Outcome.Refusal != nil ||
			!reflect.DeepEqual(rec.Outcome.Order, order) {
			t.Fatalf("claim with %s after completion: %+v, want fp1 and order %+v", fp, rec, order)
		}
	}

	r := testenv.Unique("r")
	mustClaimFree(t, s, r, "fp")
	refusal := &flashorder.Refusal{Code: flashorder.ESOLDOUT, Message: "sku-1 is sold out"}
	complete(t, s, r, flashorder.Outcome{Refusal: refusal})
	if rec := claim(t, s, r, "fp"); rec == nil || rec.Outcome == nil || rec.Outcome.Order != nil ||
		!reflect.DeepEqual(rec.Outcome.Refusal, refusal) {
		t.Fatalf("stored refusal: %+v, want %+v", rec, refusal)
	}
}

// testRelease: Release frees an in-flight claim, so that a retry runs again,
// and never drops a stored outcome.
func testRelease(t *testing.T, b Backend) {
	s := b.New(t, longRetention)
	k := testenv.Unique("done")
	mustClaimFree(t, s, k, "fp1")
	complete(t, s, k, flashorder.Outcome{Order: &flashorder.Order{ID: "x"}})
	release(t, s, k)
	if rec := claim(t, s, k, "fp1"); rec == nil || rec.Outcome == nil || rec.Outcome.Order == nil || rec.Outcome.Order.ID != "x" {
		t.Fatalf("release dropped a stored outcome: %+v", rec)
	}

	x := testenv.Unique("in-flight")
	mustClaimFree(t, s, x, "fp")
	release(t, s, x)
	mustClaimFree(t, s, x, "fp9")
	if rec := claim(t, s, x, "fp"); rec == nil || rec.Fingerprint != "fp9" || rec.Outcome != nil {
		t.Fatalf("claim after the released key was claimed again: %+v, want fp9 in flight", rec)
	}
}

// testConcurrentClaims claims one key from 100 goroutines at once (spread
// over four stores when the backend is shared, as four orderd instances
// would): one wins, and every other sees the winner's claim in flight.
func testConcurrentClaims(t *testing.T, b Backend) {
	stores := []flashorder.IdempotencyStore{b.New(t, longRetention)}
	if b.Shared {
		for range 3 {
			stores = append(stores, b.New(t, longRetention))
		}
	}
	k := testenv.Unique("same")
	const n = 100
	var winners, held atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rec, err := stores[i%len(stores)].Claim(context.Background(), k, "fp")
			switch {
			case err != nil:
				t.Error(err)
			case rec == nil:
				winners.Add(1)
			case rec.Fingerprint == "fp" && rec.Outcome == nil:
				held.Add(1)
			default:
				t.Errorf("claim: %+v, want the winner's claim in flight", rec)
			}
		}()
	}
	close(start)
	wg.Wait()
	if winners.Load() != 1 || held.Load() != n-1 {
		t.Fatalf("%d winners, %d saw the claim; want 1 and %d", winners.Load(), held.Load(), n-1)
	}
}

// testRetention: an outcome is replayed until the retention passes, and then
// the key is free again.
func testRetention(t *testing.T, b Backend) {
	s := b.New(t, shortRetention)
	k := testenv.Unique("k")
	mustClaimFree(t, s, k, "fp1")
	complete(t, s, k, flashorder.Outcome{Order: &flashorder.Order{ID: "x"}})
	if rec := claim(t, s, k, "fp1"); rec == nil || rec.Outcome == nil {
		t.Fatalf("outcome not kept for the retention: %+v", rec)
	}
	testenv.WaitFor(t, "the outcome to expire after the retention", expiryWait, func() bool {
		return claim(t, s, k, "fp3") == nil
	})
	if rec := claim(t, s, k, "fp"); rec == nil || rec.Fingerprint != "fp3" || rec.Outcome != nil {
		t.Fatalf("claim after expiry: %+v, want the new claim (fp3) in flight", rec)
	}
}

// testNotStarted: a stored not_started refusal comes back with its start
// time and lasts only until its sale starts (Outcome.Retention), well before
// the retention; then the key can be claimed again. A refusal without a
// start time keeps the full retention.
func testNotStarted(t *testing.T, b Backend) {
	s := b.New(t, longRetention)
	k, other := testenv.Unique("early"), testenv.Unique("sold-out")
	start := time.Now().Add(shortRetention).UTC()
	mustClaimFree(t, s, k, "fp")
	mustClaimFree(t, s, other, "fp")
	refusal := &flashorder.Refusal{Code: flashorder.ENOTSTARTED, Message: "not yet", StartsAt: &start}
	complete(t, s, k, flashorder.Outcome{Refusal: refusal})
	complete(t, s, other, flashorder.Outcome{Refusal: &flashorder.Refusal{Code: flashorder.ESOLDOUT, Message: "gone"}})
	rec := claim(t, s, k, "fp")
	if rec == nil || rec.Outcome == nil || rec.Outcome.Refusal == nil || rec.Outcome.Refusal.Code != flashorder.ENOTSTARTED ||
		rec.Outcome.Refusal.StartsAt == nil || !rec.Outcome.Refusal.StartsAt.Equal(start) {
		t.Fatalf("before the start: %+v, want not_started starting at %s", rec, start)
	}
	testenv.WaitFor(t, "the not_started key free at the start", expiryWait, func() bool {
		return claim(t, s, k, "fp") == nil
	})
	if rec := claim(t, s, other, "fp"); rec == nil || rec.Outcome == nil || rec.Outcome.Refusal == nil {
		t.Fatalf("a sold_out refusal expired with the not_started one: %+v", rec)
	}
}

// testBadInput: what a caller should not do changes nothing it should not.
// Releasing or completing a key that was never claimed returns no error and
// leaves no claim in flight; keys are opaque, so keys that differ only in
// case, length or a character are distinct, up to the longest key allowed.
func testBadInput(t *testing.T, b Backend) {
	s := b.New(t, longRetention)

	never := testenv.Unique("never-claimed")
	release(t, s, never)
	mustClaimFree(t, s, never, "fp")
	release(t, s, never)

	// The contract leaves Complete without a claim undefined beyond this: a
	// store may keep the outcome (Redis keeps it when the claim expired) or
	// drop it, but the key is never left in flight.
	unclaimed := testenv.Unique("completed-unclaimed")
	complete(t, s, unclaimed, flashorder.Outcome{Order: &flashorder.Order{ID: "y"}})
	if rec := claim(t, s, unclaimed, "fp"); rec != nil && (rec.Outcome == nil || rec.Outcome.Order == nil || rec.Outcome.Order.ID != "y") {
		t.Fatalf("claim after Complete without a claim: %+v, want it granted or the outcome replayed", rec)
	}

	base := testenv.Unique("k")
	similar := []string{base, strings.ToUpper(base), base + "-", base + ":*", base + " x",
		(base + strings.Repeat("z", flashorder.MaxIdempotencyKey))[:flashorder.MaxIdempotencyKey]}
	for i, k := range similar {
		mustClaimFree(t, s, k, "fp-"+k)
		complete(t, s, k, flashorder.Outcome{Order: &flashorder.Order{ID: k}})
		for _, prev := range similar[:i+1] {
			if rec := claim(t, s, prev, "fp"); rec == nil || rec.Fingerprint != "fp-"+prev || rec.Outcome == nil ||
				rec.Outcome.Order == nil || rec.Outcome.Order.ID != prev {
				t.Fatalf("key %q after %q was stored: %+v", prev, k, rec)
			}
		}
	}
}
