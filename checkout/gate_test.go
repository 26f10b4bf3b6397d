package checkout_test

import (
	"context"
	"fmt"
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

// hits returns the gate's sold-out hits.
func hits(g *checkout.Gate) int64 {
	_, sold := g.Hits()
	return sold
}

func TestGateSoldOut(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	inner := &counting{next: checkout.NewRow(db)}
	memo := checkout.NewGate(inner, db)
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
	if inner.calls.Load() != 1 || hits(memo) != 4 {
		t.Fatalf("%d database orders, %d memo hits; want 1 and 4", inner.calls.Load(), hits(memo))
	}

	// The check order stays exact: an unknown product beside a sold-out one
	// is unknown_product.
	if code := placeCode(memo, "u1", item("gone", 1), item("nope", 1)); code != flashorder.EUNKNOWNPRODUCT {
		t.Fatalf("unknown beside sold out: %q", code)
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
	if hits(memo) != 4 {
		t.Fatalf("%d memo hits, want still 4", hits(memo))
	}

	// Stock added through the store clears the mark at once.
	put(t, store, "gone", 1, 0)
	if code := placeCode(memo, "u1", item("gone", 1)); code != "" {
		t.Fatalf("order after restock: %q", code)
	}
}

func TestGateSoldOutExpires(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	now := time.Unix(1_700_000_000, 0)
	memo := checkout.NewGate(checkout.NewRow(db), db)
	memo.Now = func() time.Time { return now }
	memo.Products().Now = memo.Now
	memo.TTL = 10 * time.Second
	put(t, db, "gone", 0, 0)
	placeCode(memo, "u1", item("gone", 1))
	placeCode(memo, "u1", item("gone", 1))
	// Stock that comes back without the memo's store (as a cancelled order's
	// does) is seen once the mark expires.
	put(t, db, "gone", 1, 0)
	if code := placeCode(memo, "u1", item("gone", 1)); code != flashorder.ESOLDOUT || hits(memo) != 2 {
		t.Fatalf("within the TTL: %q, %d hits", code, hits(memo))
	}
	now = now.Add(memo.TTL)
	if code := placeCode(memo, "u1", item("gone", 1)); code != "" {
		t.Fatalf("after the TTL: %q", code)
	}
}

// TestGateShared runs two gates, as two instances on one database and
// one Redis: stock added through one is seen by the other within Recheck.
func TestGateShared(t *testing.T) {
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
	a, b := checkout.NewGate(checkout.NewRow(dbA), dbA), checkout.NewGate(checkout.NewRow(dbB), dbB)
	for _, m := range []*checkout.Gate{a, b} {
		m.Shared, m.TTL, m.Recheck = cache, time.Minute, 50*time.Millisecond
	}
	put(t, a.Store(), "gone", 0, 0)
	placeCode(a, "u1", item("gone", 1))
	if code := placeCode(a, "u1", item("gone", 1)); code != flashorder.ESOLDOUT || hits(a) != 1 {
		t.Fatalf("memo on A: %q, %d hits", code, hits(a))
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

// countingStore counts the product reads and holder reads that reach the
// database.
type countingStore struct {
	flashorder.Store
	products, holders atomic.Int64
}

func (s *countingStore) Product(ctx context.Context, sku string) (*flashorder.Product, error) {
	s.products.Add(1)
	return s.Store.Product(ctx, sku)
}

func (s *countingStore) QuotaHolders(ctx context.Context, sku string, max int) (map[string]int64, error) {
	s.holders.Add(1)
	return s.Store.QuotaHolders(ctx, sku, max)
}

// TestGateWindow checks that orders outside a product's sale window are
// refused from the product cache, with the strategy's answer, and that a
// window changed through the gate's store applies at once.
func TestGateWindow(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	store := &countingStore{Store: db}
	now := time.Date(2026, 12, 1, 9, 59, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	row := checkout.NewRow(db)
	row.Now = clock
	inner := &counting{next: row}
	gate := checkout.NewGate(inner, store)
	gate.Now, gate.Products().Now = clock, clock
	gate.Products().TTL = time.Minute
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	end := start.Add(time.Hour)
	putWindow := func(s flashorder.Store, sku string, starts, ends *time.Time) {
		t.Helper()
		_, err := s.PutProduct(context.Background(), flashorder.Product{SKU: sku, Name: sku, PriceCents: 1, Stock: 10, StartsAt: starts, EndsAt: ends})
		if err != nil {
			t.Fatal(err)
		}
	}
	putWindow(gate.Store(), "drop", &start, &end)
	putWindow(gate.Store(), "open", nil, nil)
	for i := range 100 {
		if code := placeCode(gate, fmt.Sprintf("u%d", i), item("drop", 1)); code != flashorder.ENOTSTARTED {
			t.Fatalf("before the start: %q", code)
		}
	}
	if code := placeCode(gate, "u1", item("open", 1), item("drop", 1)); code != flashorder.ENOTSTARTED {
		t.Fatalf("a cart across an upcoming product: %q", code)
	}
	if code := placeCode(gate, "u1", item("drop", 1), item("nope", 1)); code != flashorder.EUNKNOWNPRODUCT {
		t.Fatalf("an unknown product beside an upcoming one: %q", code)
	}
	if window, _ := gate.Hits(); window != 101 || inner.calls.Load() != 1 {
		t.Fatalf("%d refused by the gate, %d reached the strategy; want 101 and 1", window, inner.calls.Load())
	}
	if n := store.products.Load(); n > 3 {
		t.Fatalf("%d product reads for 102 orders of 3 SKUs", n)
	}
	now = start
	if code := placeCode(gate, "u1", item("drop", 1)); code != "" {
		t.Fatalf("at the start: %q", code)
	}
	now = end
	if code := placeCode(gate, "u1", item("drop", 1)); code != flashorder.ESALEENDED {
		t.Fatalf("at the end: %q", code)
	}
	// Moved through the gate's store: seen at once, not after the TTL.
	later := end.Add(time.Hour)
	putWindow(gate.Store(), "drop", &start, &later)
	if code := placeCode(gate, "u2", item("drop", 1)); code != "" {
		t.Fatalf("after the end moved later: %q", code)
	}
}

// TestGateLimitWhenSoldOut checks the sold-out marks of a product with a
// per-user limit: a user who holds the limit is told limit_exceeded, the
// others sold_out, as the strategy would, without the database; and the
// learning reads the database once per burst of refusals, not per refusal.
func TestGateLimitWhenSoldOut(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	store := &countingStore{Store: db}
	inner := &counting{next: checkout.NewRow(db)}
	gate := checkout.NewGate(inner, store)
	gate.TTL = time.Minute
	put(t, gate.Store(), "lim", 2, 1)
	put(t, gate.Store(), "pair", 10, 2)
	for _, u := range []string{"h1", "h2"} {
		if code := placeCode(gate, u, item("lim", 1)); code != "" {
			t.Fatalf("%s: %q", u, code)
		}
	}
	products := store.products.Load()
	codes := map[string]int{}
	for i := range 200 {
		codes[placeCode(gate, fmt.Sprintf("u%d", i%50), item("lim", 1))]++
	}
	if codes[flashorder.ESOLDOUT] != 200 {
		t.Fatalf("other users after the sell-out: %v", codes)
	}
	for _, u := range []string{"h1", "h2"} {
		if code := placeCode(gate, u, item("lim", 1)); code != flashorder.ELIMITEXCEEDED {
			t.Fatalf("holder %s after the sell-out: %q, want limit_exceeded", u, code)
		}
	}
	// Two units of a limit of 1: over the limit even for a user who holds none.
	if code := placeCode(gate, "u0", item("lim", 2)); code != flashorder.ELIMITEXCEEDED {
		t.Fatalf("2 units of a limit of 1: %q", code)
	}
	if inner.calls.Load() != 3 || hits(gate) != 202 {
		t.Fatalf("%d orders reached the strategy, %d gate hits; want 3 and 202", inner.calls.Load(), hits(gate))
	}
	if n := store.products.Load() - products; n != 1 || store.holders.Load() != 1 {
		t.Fatalf("%d product reads and %d holder reads to learn the sell-out; want 1 and 1", n, store.holders.Load())
	}
	// The strategy gives the same answers (without the gate).
	if code := placeCode(inner, "h1", item("lim", 1)); code != flashorder.ELIMITEXCEEDED {
		t.Fatalf("strategy, holder: %q", code)
	}
	if code := placeCode(inner, "u1", item("lim", 1)); code != flashorder.ESOLDOUT {
		t.Fatalf("strategy, other: %q", code)
	}
}

// TestGateRenewsMarks checks that a mark in use is renewed from the
// database in the background: stock that came back without the gate's store
// (a cancel) is sold again within TTL, while no refusal waits.
func TestGateRenewsMarks(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	var nowNs atomic.Int64
	nowNs.Store(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, nowNs.Load()) }
	gate := checkout.NewGate(checkout.NewRow(db), db)
	gate.Now, gate.Products().Now = clock, clock
	gate.TTL = 10 * time.Second
	put(t, gate.Store(), "gone", 0, 0)
	placeCode(gate, "u1", item("gone", 1))
	if code := placeCode(gate, "u1", item("gone", 1)); code != flashorder.ESOLDOUT || hits(gate) != 1 {
		t.Fatalf("marked: %q, %d hits", code, hits(gate))
	}
	put(t, db, "gone", 1, 0) // behind the gate's back, as a cancel returns stock
	nowNs.Add(int64(6 * time.Second))
	// Past half the TTL: this hit is answered from the mark and renews it.
	if code := placeCode(gate, "u1", item("gone", 1)); code != flashorder.ESOLDOUT {
		t.Fatalf("past half the TTL: %q", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for placeCode(gate, "u1", item("gone", 1)) != "" {
		if time.Now().After(deadline) {
			t.Fatal("the renewal never saw the stock that came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
