package checkout_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/redis"
)

// counting counts the orders that reach the real strategy behind the memo.
type counting struct {
	next  flashorder.OrderPlacer
	calls atomic.Int64
}

func (c *counting) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	c.calls.Add(1)
	return c.next.PlaceOrder(ctx, req)
}

func put(t *testing.T, s flashorder.Store, sku string, stock, limit int64) {
	t.Helper()
	if _, err := s.PutProduct(context.Background(), flashorder.Product{SKU: sku, Name: sku, PriceCents: 100, Stock: stock, PerUserLimit: limit}); err != nil {
		t.Fatal(err)
	}
}

func placeCode(m flashorder.OrderPlacer, user string, items ...flashorder.ItemRequest) string {
	req := &flashorder.PlaceOrderRequest{OrderRequest: flashorder.OrderRequest{UserID: user, Items: items}}
	req.Fingerprint = req.OrderRequest.Fingerprint()
	_, err := m.PlaceOrder(context.Background(), req)
	return flashorder.ErrorCode(err)
}

func item(sku string, q int64) flashorder.ItemRequest {
	return flashorder.ItemRequest{SKU: sku, Quantity: q}
}

func TestSoldOutMemo(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	inner := &counting{next: checkout.NewRow(db)}
	memo := checkout.NewSoldOutMemo(inner, db)
	memo.TTL = time.Minute
	store := memo.Store()
	put(t, store, "gone", 0, 0)
	put(t, store, "limited", 0, 1)
	put(t, store, "few", 2, 0)
	put(t, store, "plenty", 100, 0)

	// The first refusal goes to the database; the next ones do not.
	for i := range 5 {
		if code := placeCode(memo, "u1", item("gone", 1)); code != flashorder.ESOLDOUT {
			t.Fatalf("order %d: %q, want sold_out", i, code)
		}
	}
	if inner.calls.Load() != 1 || memo.Hits() != 4 {
		t.Fatalf("%d database orders, %d memo hits; want 1 and 4", inner.calls.Load(), memo.Hits())
	}

	// The check order stays exact: an unknown product beside a sold-out one
	// is unknown_product, and a SKU with a per-user limit is never memoized
	// (a user holding the limit must get limit_exceeded).
	if code := placeCode(memo, "u1", item("gone", 1), item("nope", 1)); code != flashorder.EUNKNOWNPRODUCT {
		t.Fatalf("unknown beside sold out: %q", code)
	}
	for range 3 {
		placeCode(memo, "u1", item("limited", 1))
	}
	// Stock short of the quantity but not zero is not memoized either.
	for range 3 {
		if code := placeCode(memo, "u1", item("few", 3)); code != flashorder.ESOLDOUT {
			t.Fatalf("3 of 2: %q", code)
		}
	}
	if code := placeCode(memo, "u1", item("few", 2)); code != "" {
		t.Fatalf("2 of 2 after refusals of 3: %q", code)
	}
	// A multi-item order is refused from the memo only when all its items are.
	if code := placeCode(memo, "u1", item("gone", 1), item("plenty", 1)); code != flashorder.ESOLDOUT {
		t.Fatalf("multi-item: %q", code)
	}
	if memo.Hits() != 4 {
		t.Fatalf("%d memo hits, want still 4", memo.Hits())
	}

	// Stock added through the store clears the mark at once.
	put(t, store, "gone", 1, 0)
	if code := placeCode(memo, "u1", item("gone", 1)); code != "" {
		t.Fatalf("order after restock: %q", code)
	}
}

func TestSoldOutMemoExpires(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	now := time.Unix(1_700_000_000, 0)
	memo := checkout.NewSoldOutMemo(checkout.NewRow(db), db)
	memo.Now = func() time.Time { return now }
	put(t, db, "gone", 0, 0)
	placeCode(memo, "u1", item("gone", 1))
	placeCode(memo, "u1", item("gone", 1))
	// Stock that comes back without the memo's store (as a cancelled order's
	// does) is seen once the mark expires.
	put(t, db, "gone", 1, 0)
	if code := placeCode(memo, "u1", item("gone", 1)); code != flashorder.ESOLDOUT || memo.Hits() != 2 {
		t.Fatalf("within the TTL: %q, %d hits", code, memo.Hits())
	}
	now = now.Add(memo.TTL)
	if code := placeCode(memo, "u1", item("gone", 1)); code != "" {
		t.Fatalf("after the TTL: %q", code)
	}
}

// TestSoldOutMemoShared runs two memos, as two instances on one database and
// one Redis: stock added through one is seen by the other within Recheck.
func TestSoldOutMemoShared(t *testing.T) {
	u := testenv.RedisURL(t)
	client, err := redis.OpenClient(u)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cache := redis.NewSoldOutCache(client)
	cache.Prefix = "fotest:soldout:" + time.Now().Format("150405.000000") + ":"
	cache.Timeout = time.Second

	dbURL := testenv.SQLiteURL(t)
	dbA, dbB := placertest.Open(t, dbURL), placertest.Open(t, dbURL)
	a, b := checkout.NewSoldOutMemo(checkout.NewRow(dbA), dbA), checkout.NewSoldOutMemo(checkout.NewRow(dbB), dbB)
	for _, m := range []*checkout.SoldOutMemo{a, b} {
		m.Shared, m.TTL, m.Recheck = cache, time.Minute, 50*time.Millisecond
	}
	put(t, a.Store(), "gone", 0, 0)
	placeCode(a, "u1", item("gone", 1))
	if code := placeCode(a, "u1", item("gone", 1)); code != flashorder.ESOLDOUT || a.Hits() != 1 {
		t.Fatalf("memo on A: %q, %d hits", code, a.Hits())
	}
	put(t, b.Store(), "gone", 1, 0)
	deadline := time.Now().Add(5 * time.Second)
	for placeCode(a, "u1", item("gone", 1)) != "" {
		if time.Now().After(deadline) {
			t.Fatal("A never saw the stock added through B")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
