package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// stuckClaims is an idempotency store whose claims work but whose Complete
// and Release fail, as a Redis store's do when Redis stops answering between
// the claim and the end of the request: the claim stays in flight.
type stuckClaims struct{ *inmem.IdempotencyStore }

func (stuckClaims) Complete(context.Context, string, flashorder.Outcome) error {
	return errors.New("redis: store idempotent outcome: i/o timeout")
}

func (stuckClaims) Release(context.Context, string) error {
	return errors.New("redis: release idempotency claim: i/o timeout")
}

// TestRetryAfterStuckClaim: an order was created and answered 201, but its
// claim could be neither completed nor released. A retry with the same key
// must replay the order from the database, not answer 409
// request_in_progress until the claim expires.
func TestRetryAfterStuckClaim(t *testing.T) {
	db, err := gormdb.Open(context.Background(), testenv.SQLiteURL(t), gormdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.PutProduct(context.Background(), flashorder.Product{SKU: "p", Name: "p", PriceCents: 5, Stock: 100}); err != nil {
		t.Fatal(err)
	}
	s := newServer(orderhttp.Config{Store: db}, checkout.NewRow(db), stuckClaims{inmem.NewIdempotencyStore()})
	h := s.Handler()

	first := post(h, "k-1", "u-1")
	if first.Code != 201 {
		t.Fatalf("first: %d %s", first.Code, first.Body)
	}
	retry := post(h, "k-1", "u-1")
	if retry.Code != 201 || retry.Header().Get(orderhttp.ReplayedHeader) != "true" {
		t.Fatalf("retry: %d %s (replayed %q), want the replayed 201", retry.Code, retry.Body, retry.Header().Get(orderhttp.ReplayedHeader))
	}
	var a, b flashorder.Order
	_ = json.Unmarshal(first.Body.Bytes(), &a)
	_ = json.Unmarshal(retry.Body.Bytes(), &b)
	if a.ID == "" || a.ID != b.ID {
		t.Errorf("retry answered order %q, the first %q", b.ID, a.ID)
	}
	// Another request under the key is still refused.
	if w := post(h, "k-1", "u-2"); w.Code != 422 {
		t.Errorf("other request under the key: %d %s, want 422", w.Code, w.Body)
	}
}

// lostCommit is a store whose first transaction commits but reports a lost
// connection, as a COMMIT whose answer never arrives does: the order is in
// the database, the strategy cannot know it.
type lostCommit struct {
	*gormdb.DB
	lost atomic.Bool
}

func (s *lostCommit) InTx(ctx context.Context, fn func(tx flashorder.Tx) error) error {
	if err := s.DB.InTx(ctx, fn); err != nil {
		return err
	}
	if s.lost.CompareAndSwap(false, true) {
		return flashorder.Errorf(flashorder.EUNAVAILABLE, "the database did not complete the request; retry later: unexpected EOF during COMMIT")
	}
	return nil
}

// TestUnknownCommitOutcome: an order whose COMMIT outcome is unknown to
// orderd is never answered 201 (it is 503, retry later), and the client's
// retry with the same Idempotency-Key replays the order that did commit
// instead of ordering twice: for the row and batch strategies, on every
// database.
func TestUnknownCommitOutcome(t *testing.T) {
	for _, strategy := range []string{"row", "batch"} {
		for _, d := range testenv.Databases(t) { // fresh databases for each strategy
			t.Run(d.Engine+"-"+strategy, func(t *testing.T) {
				ctx := context.Background()
				db, err := gormdb.Open(ctx, d.URL, gormdb.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "p", Name: "p", PriceCents: 5, Stock: 100}); err != nil {
					t.Fatal(err)
				}
				store := &lostCommit{DB: db}
				var placer flashorder.OrderPlacer = checkout.NewRow(store)
				if strategy == "batch" {
					placer = checkout.NewBatch(store, checkout.BatchOptions{})
				}
				s := newServer(orderhttp.Config{Store: store}, placer, nil)
				h := s.Handler()

				if first := post(h, "k-1", "u-1"); first.Code != 503 {
					t.Fatalf("the order whose commit was lost: %d %s, want 503", first.Code, first.Body)
				}
				retry := post(h, "k-1", "u-1")
				if retry.Code != 201 || retry.Header().Get(orderhttp.ReplayedHeader) != "true" {
					t.Fatalf("retry: %d %s (replayed %q), want the committed order replayed", retry.Code, retry.Body, retry.Header().Get(orderhttp.ReplayedHeader))
				}
				var o flashorder.Order
				if err := json.Unmarshal(retry.Body.Bytes(), &o); err != nil {
					t.Fatal(err)
				}
				inv, err := db.CheckInvariants(ctx, []string{o.ID})
				if err != nil {
					t.Fatal(err)
				}
				if !inv.OK() || inv.Orders != 1 {
					t.Fatalf("database after the retry: %d orders, violations %v; want the one order", inv.Orders, inv.Violations)
				}
				if p, err := db.Product(ctx, "p"); err != nil || p.Stock != 99 {
					t.Fatalf("stock after the retry: %+v, %v; want 99", p, err)
				}
			})
		}
	}
}
