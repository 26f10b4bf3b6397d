package checkout_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/inmem"
)

// scripted is an OrderPlacer that answers what next says and counts its
// calls, and an OrderFinder over the orders it placed plus the ones a test
// puts there (another instance's).
type scripted struct {
	mu     sync.Mutex
	calls  int
	next   func(req *flashorder.PlaceOrderRequest) (*flashorder.Order, error)
	stored map[string]*flashorder.Order // by idempotency key
}

func newScripted(next func(req *flashorder.PlaceOrderRequest) (*flashorder.Order, error)) *scripted {
	return &scripted{next: next, stored: map[string]*flashorder.Order{}}
}

func (s *scripted) PlaceOrder(_ context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	o, err := s.next(req)
	if err == nil {
		s.mu.Lock()
		s.stored[req.IdempotencyKey] = o
		s.mu.Unlock()
	}
	return o, err
}

func (s *scripted) OrderByIdempotencyKey(_ context.Context, key string) (*flashorder.Order, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.stored[key]; ok {
		return o, nil
	}
	return nil, flashorder.Errorf(flashorder.ENOTFOUND, "no order")
}

func (s *scripted) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func placeOK(req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	return &flashorder.Order{ID: "o-" + req.UserID, UserID: req.UserID, Status: flashorder.StatusCreated,
		IdempotencyKey: req.IdempotencyKey, Fingerprint: req.Fingerprint}, nil
}

func orderReq(key, user string) *flashorder.PlaceOrderRequest {
	return &flashorder.PlaceOrderRequest{IdempotencyKey: key, OrderRequest: flashorder.OrderRequest{
		UserID: user, Items: []flashorder.ItemRequest{{SKU: "a", Quantity: 1}}}}
}

// TestIdempotentReplays: a keyed order is placed once; its retries get the
// same order, replayed; other content under the key is refused; requests
// without a key are placed every time.
func TestIdempotentReplays(t *testing.T) {
	ctx := context.Background()
	p := newScripted(placeOK)
	idem := checkout.NewIdempotent(p, inmem.NewIdempotencyStore(), p, nil)

	first, replayed, err := idem.Place(ctx, orderReq("k", "u1"))
	if err != nil || replayed || first.ID != "o-u1" {
		t.Fatalf("first: %+v replayed=%v %v", first, replayed, err)
	}
	again, replayed, err := idem.Place(ctx, orderReq("k", "u1"))
	if err != nil || !replayed || again.ID != first.ID || p.count() != 1 {
		t.Fatalf("retry: %+v replayed=%v %v, %d placements", again, replayed, err, p.count())
	}
	if _, _, err := idem.Place(ctx, orderReq("k", "u2")); flashorder.ErrorCode(err) != flashorder.EKEYREUSED {
		t.Fatalf("other content under the key: %v", err)
	}
	for range 2 {
		if o, replayed, err := idem.Place(ctx, orderReq("", "u3")); err != nil || replayed || o == nil {
			t.Fatalf("no key: %+v %v %v", o, replayed, err)
		}
	}
	if p.count() != 3 {
		t.Fatalf("%d placements, want 3 (one keyed, two without a key)", p.count())
	}
	// As a flashorder.OrderPlacer it answers the same, without the flag.
	if o, err := idem.PlaceOrder(ctx, orderReq("k", "u1")); err != nil || o.ID != first.ID || p.count() != 3 {
		t.Fatalf("PlaceOrder: %+v %v", o, err)
	}
}

// TestIdempotentRefusalsAndFailures: a refusal (sold out) is kept and
// replayed; a failure (unavailable) is not, and the retry runs again; a
// panic releases the claim.
func TestIdempotentRefusalsAndFailures(t *testing.T) {
	ctx := context.Background()
	var answer error
	boom := false
	p := newScripted(func(req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
		if boom {
			panic("placer bug")
		}
		if answer != nil {
			return nil, answer
		}
		return placeOK(req)
	})
	idem := checkout.NewIdempotent(p, inmem.NewIdempotencyStore(), p, nil)

	answer = flashorder.Errorf(flashorder.ESOLDOUT, "a is sold out")
	if _, replayed, err := idem.Place(ctx, orderReq("sold", "u1")); flashorder.ErrorCode(err) != flashorder.ESOLDOUT || replayed {
		t.Fatalf("first: replayed=%v %v", replayed, err)
	}
	answer = nil // restocked: the key's retries are still sold out
	o, replayed, err := idem.Place(ctx, orderReq("sold", "u1"))
	if flashorder.ErrorCode(err) != flashorder.ESOLDOUT || flashorder.ErrorMessage(err) != "a is sold out" || !replayed || o != nil || p.count() != 1 {
		t.Fatalf("retry of a refusal: %+v replayed=%v %v, %d placements", o, replayed, err, p.count())
	}

	answer = flashorder.Errorf(flashorder.EUNAVAILABLE, "database down")
	if _, _, err := idem.Place(ctx, orderReq("down", "u1")); flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE {
		t.Fatalf("failure: %v", err)
	}
	answer = nil
	if o, replayed, err := idem.Place(ctx, orderReq("down", "u1")); err != nil || replayed || o == nil || p.count() != 3 {
		t.Fatalf("retry of a failure: %+v replayed=%v %v, %d placements", o, replayed, err, p.count())
	}

	boom = true
	func() {
		defer func() { _ = recover() }()
		_, _, _ = idem.Place(ctx, orderReq("boom", "u1"))
		t.Error("no panic")
	}()
	boom = false
	if o, replayed, err := idem.Place(ctx, orderReq("boom", "u1")); err != nil || replayed || o == nil {
		t.Fatalf("after a panic: %+v replayed=%v %v; want the claim released and the order placed", o, replayed, err)
	}
}

// TestIdempotentDatabaseDecides: when the store does not know a key that an
// order in the database holds (another instance placed it, the store
// restarted), the database's order is replayed, or the request refused when
// its content differs; a claim stuck in flight replays a committed order.
func TestIdempotentDatabaseDecides(t *testing.T) {
	ctx := context.Background()
	p := newScripted(func(req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
		return nil, flashorder.ErrIdempotencyKeyTaken
	})
	idem := checkout.NewIdempotent(p, inmem.NewIdempotencyStore(), p, nil)

	elsewhere := orderReq("k", "u1")
	elsewhere.Fingerprint = elsewhere.OrderRequest.Fingerprint()
	p.stored["k"] = &flashorder.Order{ID: "o-elsewhere", Fingerprint: elsewhere.Fingerprint}
	if o, replayed, err := idem.Place(ctx, orderReq("k", "u1")); err != nil || !replayed || o.ID != "o-elsewhere" {
		t.Fatalf("key taken in the database: %+v replayed=%v %v", o, replayed, err)
	}
	p.stored["k2"] = &flashorder.Order{ID: "o-other", Fingerprint: "another request"}
	if _, _, err := idem.Place(ctx, orderReq("k2", "u1")); flashorder.ErrorCode(err) != flashorder.EKEYREUSED {
		t.Fatalf("key taken by other content: %v", err)
	}
	// Taken, yet the order is not found (not committed yet, or lost): retry later.
	_, _, err := idem.Place(ctx, orderReq("k3", "u1"))
	if flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE || !errors.Is(err, flashorder.ErrIdempotencyKeyTaken) {
		t.Fatalf("key taken, order not found: %v", err)
	}

	// A claim left in flight (its owner could not complete it).
	keys := inmem.NewIdempotencyStore()
	idem = checkout.NewIdempotent(p, keys, p, nil)
	stuck := orderReq("k4", "u1")
	stuck.Fingerprint = stuck.OrderRequest.Fingerprint()
	if rec, err := keys.Claim(ctx, "k4", stuck.Fingerprint); rec != nil || err != nil {
		t.Fatal(rec, err)
	}
	if _, _, err := idem.Place(ctx, orderReq("k4", "u1")); flashorder.ErrorCode(err) != flashorder.EINPROGRESS {
		t.Fatalf("claim in flight, no order: %v", err)
	}
	p.stored["k4"] = &flashorder.Order{ID: "o-committed", Fingerprint: stuck.Fingerprint}
	if o, replayed, err := idem.Place(ctx, orderReq("k4", "u1")); err != nil || !replayed || o.ID != "o-committed" {
		t.Fatalf("claim in flight, order committed: %+v replayed=%v %v", o, replayed, err)
	}
}

// TestIdempotentReplayWaitsDurable checks that an order found in the
// database is replayed only once Durable says it would survive the loss of
// the database server (an order whose commit orderd gave up on may live on
// the primary alone), and that a failing wait answers unavailable, not the
// order. A replay from the idempotency store's own record does not wait.
func TestIdempotentReplayWaitsDurable(t *testing.T) {
	ctx := context.Background()
	p := newScripted(func(req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
		return nil, flashorder.ErrIdempotencyKeyTaken
	})
	idem := checkout.NewIdempotent(p, inmem.NewIdempotencyStore(), p, nil)
	var waits int
	var waitErr error
	idem.Durable = func(context.Context) error { waits++; return waitErr }

	req := orderReq("d1", "u1")
	req.Fingerprint = req.OrderRequest.Fingerprint()
	p.stored["d1"] = &flashorder.Order{ID: "o-local", Fingerprint: req.Fingerprint}
	waitErr = errors.New("the standbys did not confirm")
	if o, _, err := idem.Place(ctx, orderReq("d1", "u1")); flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE || o != nil || waits != 1 {
		t.Fatalf("replay while the wait fails: %+v %v after %d waits", o, err, waits)
	}
	waitErr = nil
	if o, replayed, err := idem.Place(ctx, orderReq("d1", "u1")); err != nil || !replayed || o.ID != "o-local" || waits != 2 {
		t.Fatalf("replay once durable: %+v replayed=%v %v after %d waits", o, replayed, err, waits)
	}
	if _, replayed, err := idem.Place(ctx, orderReq("d1", "u1")); err != nil || !replayed || waits != 2 {
		t.Fatalf("replay from the store's record: replayed=%v %v after %d waits", replayed, err, waits)
	}
}

// TestIdempotentNotStartedLastsUntilTheStart checks that a not_started
// refusal is stored for the key's replays only until the sale starts: a
// retry with the same key after Retry-After runs again.
func TestIdempotentNotStartedLastsUntilTheStart(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	now := start.Add(-time.Minute)
	placer := newScripted(func(req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
		if now.Before(start) {
			return nil, &flashorder.Error{Code: flashorder.ENOTSTARTED, Message: "not yet", StartsAt: start}
		}
		return placeOK(req)
	})
	keys := inmem.NewIdempotencyStore()
	keys.Now = func() time.Time { return now }
	p := checkout.NewIdempotent(placer, keys, placer, nil)
	req := func() *flashorder.PlaceOrderRequest {
		return &flashorder.PlaceOrderRequest{OrderRequest: flashorder.OrderRequest{UserID: "u1",
			Items: []flashorder.ItemRequest{{SKU: "drop", Quantity: 1}}}, IdempotencyKey: "k1"}
	}
	_, replayed, err := p.Place(context.Background(), req())
	var ferr *flashorder.Error
	if !errors.As(err, &ferr) || ferr.Code != flashorder.ENOTSTARTED || !ferr.StartsAt.Equal(start) || replayed {
		t.Fatalf("before the start: %v (replayed %v)", err, replayed)
	}
	now = start.Add(-time.Second)
	_, replayed, err = p.Place(context.Background(), req())
	if !errors.As(err, &ferr) || ferr.Code != flashorder.ENOTSTARTED || !ferr.StartsAt.Equal(start) || !replayed || placer.count() != 1 {
		t.Fatalf("the same key again before the start: %v (replayed %v, %d placements)", err, replayed, placer.count())
	}
	now = start
	o, replayed, err := p.Place(context.Background(), req())
	if err != nil || o == nil || replayed || placer.count() != 2 {
		t.Fatalf("the same key at the start: %+v %v (replayed %v, %d placements)", o, err, replayed, placer.count())
	}
}
