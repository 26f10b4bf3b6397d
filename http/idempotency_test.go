package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testenv"
)

// stuckClaims is an idempotency store whose claims work but whose Complete
// and Release fail, as a Redis store's do when Redis stops answering between
// the claim and the end of the request: the claim stays in flight.
type stuckClaims struct{ *inmem.IdempotencyStore }

func (stuckClaims) Complete(context.Context, string, flashorder.StoredAnswer) error {
	return errors.New("redis: store idempotent answer: i/o timeout")
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
	s := orderhttp.NewServer(db, checkout.NewRow(db), stuckClaims{inmem.NewIdempotencyStore()}, "admin")
	s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
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
