package checkout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
)

// memTx is the part of a transaction a batch uses, in memory: products and
// quotas as given, and the idempotency keys that stored orders hold. It
// records what the batch deletes and writes.
type memTx struct {
	flashorder.Tx
	products map[string]*flashorder.Product
	locked   map[string]*flashorder.Product // under the lock, if not products
	held     map[flashorder.QuotaKey]int64
	stored   map[string]bool

	deleted []string
	take    map[string]int64
	add     map[flashorder.QuotaKey]int64
}

func (t *memTx) Products(_ context.Context, skus []string) (map[string]*flashorder.Product, error) {
	return copyProducts(t.products, skus), nil
}

func (t *memTx) LockProducts(_ context.Context, skus []string) (map[string]*flashorder.Product, error) {
	if t.locked != nil {
		return copyProducts(t.locked, skus), nil
	}
	return copyProducts(t.products, skus), nil
}

func copyProducts(products map[string]*flashorder.Product, skus []string) map[string]*flashorder.Product {
	m := make(map[string]*flashorder.Product, len(skus))
	for _, sku := range skus {
		if p := products[sku]; p != nil {
			c := *p
			m[sku] = &c
		}
	}
	return m
}

func (t *memTx) Quotas(_ context.Context, keys []flashorder.QuotaKey) (map[flashorder.QuotaKey]int64, error) {
	m := make(map[flashorder.QuotaKey]int64, len(keys))
	for _, k := range keys {
		if n, ok := t.held[k]; ok {
			m[k] = n
		}
	}
	return m, nil
}

func (t *memTx) InsertOrders(_ context.Context, orders []*flashorder.Order) (map[string]bool, error) {
	taken := map[string]bool{}
	for _, o := range orders {
		if o.IdempotencyKey != "" && t.stored[o.IdempotencyKey] {
			taken[o.IdempotencyKey] = true
		}
	}
	return taken, nil
}

func (t *memTx) DeleteOrders(_ context.Context, ids []string) error {
	t.deleted = ids
	return nil
}

func (t *memTx) TakeStocks(_ context.Context, take map[string]int64) error {
	t.take = take
	return nil
}

func (t *memTx) AddQuotas(_ context.Context, add map[flashorder.QuotaKey]int64) error {
	t.add = add
	return nil
}

// benchBatch returns a full batch over 50 products, half of them with a
// per-user limit of 2, with stock for about half of its units; every fourth
// order has an idempotency key, one in eight of them one that a stored order
// holds.
func benchBatch(b *testing.B) ([]*pendingOrder, *memTx) {
	b.Helper()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tx := &memTx{products: map[string]*flashorder.Product{}, held: map[flashorder.QuotaKey]int64{}, stored: map[string]bool{}}
	for i := range 50 {
		sku := fmt.Sprintf("sku-%02d", i)
		tx.products[sku] = &flashorder.Product{SKU: sku, PriceCents: 100, Stock: 15, PerUserLimit: int64(2 * (i % 2))}
	}
	batch := make([]*pendingOrder, DefaultMaxBatch)
	for i := range batch {
		req := &flashorder.PlaceOrderRequest{OrderRequest: flashorder.OrderRequest{
			UserID: fmt.Sprintf("u-%d", i%300),
			Items: []flashorder.ItemRequest{
				{SKU: fmt.Sprintf("sku-%02d", i%50), Quantity: 1},
				{SKU: fmt.Sprintf("sku-%02d", (i*7+3)%50), Quantity: 1},
			},
		}}
		if req.Items[0].SKU == req.Items[1].SKU {
			req.Items = req.Items[:1]
		}
		if i%4 == 0 {
			req.IdempotencyKey = fmt.Sprintf("key-%d", i%700)
			if i%32 == 0 {
				tx.stored[req.IdempotencyKey] = true
			}
		}
		o, err := NewOrder(req, now)
		if err != nil {
			b.Fatal(err)
		}
		batch[i] = &pendingOrder{order: o}
	}
	return batch, tx
}

// BenchmarkBatchAllotment runs a batch transaction of DefaultMaxBatch orders
// against memTx: the work of the allotment alone, without a database.
func BenchmarkBatchAllotment(b *testing.B) {
	batch, tx := benchBatch(b)
	answers := make([]error, len(batch))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := commitInTx(ctx, tx, batch, answers, func() {}); err != nil {
			b.Fatal(err)
		}
	}
}

var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testOrder returns a pending order of user for qty units of sku, with key.
func testOrder(t *testing.T, user, key, sku string, qty int64) *pendingOrder {
	t.Helper()
	req := &flashorder.PlaceOrderRequest{IdempotencyKey: key, OrderRequest: flashorder.OrderRequest{
		UserID: user, Items: []flashorder.ItemRequest{{SKU: sku, Quantity: qty}}}}
	o, err := NewOrder(req, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return &pendingOrder{order: o}
}

// testLine is an order of a test batch: qty units of product a.
type testLine struct {
	user, key string
	qty       int64
}

// TestBatchAllotmentSteps runs batches through predict and settle against
// memTx: the key rules of predict, and settle's refusals under the lock,
// which a twin of a refused owner shares.
func TestBatchAllotmentSteps(t *testing.T) {
	product := func(stock, limit int64) *flashorder.Product {
		return &flashorder.Product{SKU: "a", PriceCents: 7, Stock: stock, PerUserLimit: limit}
	}
	for _, tc := range []struct {
		name         string
		read, locked *flashorder.Product
		stored       string // a key a stored order holds
		orders       []testLine
		want         []string // answers' codes, "" for created
		wantDeleted  []int    // indexes of orders inserted, then refused
		wantTake     int64
	}{
		{name: "first come first served", read: product(2, 0),
			orders: []testLine{{"u1", "", 1}, {"u2", "", 2}, {"u3", "", 1}},
			want:   []string{"", flashorder.ESOLDOUT, ""}, wantTake: 2},
		{name: "limit before stock", read: product(1, 1),
			orders: []testLine{{"u1", "", 1}, {"u1", "", 1}, {"u2", "", 1}},
			want:   []string{"", flashorder.ELIMITEXCEEDED, flashorder.ESOLDOUT}, wantTake: 1},
		{name: "twin of an accepted order", read: product(5, 0),
			orders: []testLine{{"u1", "k", 1}, {"u1", "k", 1}},
			want:   []string{"", "key taken"}, wantTake: 1},
		{name: "stored key frees the stock", read: product(1, 0), stored: "s",
			orders: []testLine{{"u1", "s", 1}, {"u2", "", 1}},
			want:   []string{"key taken", ""}, wantTake: 1},
		{name: "twin of an owner refused under the lock", read: product(1, 0), locked: product(0, 0),
			orders: []testLine{{"u1", "k", 1}, {"u1", "k", 1}},
			want:   []string{flashorder.ESOLDOUT, flashorder.ESOLDOUT}, wantDeleted: []int{0}},
		{name: "unknown product under the lock", read: product(3, 0), locked: &flashorder.Product{SKU: "b"},
			orders: []testLine{{"u1", "", 1}},
			want:   []string{flashorder.EUNKNOWNPRODUCT}, wantDeleted: []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &memTx{products: map[string]*flashorder.Product{"a": tc.read}, stored: map[string]bool{tc.stored: true}}
			if tc.locked != nil {
				tx.locked = map[string]*flashorder.Product{tc.locked.SKU: tc.locked}
			}
			batch := make([]*pendingOrder, len(tc.orders))
			for i, o := range tc.orders {
				batch[i] = testOrder(t, o.user, o.key, "a", o.qty)
			}
			answers := make([]error, len(batch))
			if err := commitInTx(context.Background(), tx, batch, answers, func() {}); err != nil {
				t.Fatal(err)
			}
			for i, err := range answers {
				got := flashorder.ErrorCode(err)
				if errors.Is(err, flashorder.ErrIdempotencyKeyTaken) {
					got = "key taken"
				}
				if got != tc.want[i] {
					t.Errorf("order %d: %v, want %q", i, err, tc.want[i])
				}
			}
			var deleted []string
			for _, i := range tc.wantDeleted {
				deleted = append(deleted, batch[i].order.ID)
			}
			if !slices.Equal(tx.deleted, deleted) {
				t.Errorf("deleted %v, want %v", tx.deleted, deleted)
			}
			if tx.take["a"] != tc.wantTake {
				t.Errorf("took %d units, want %d", tx.take["a"], tc.wantTake)
			}
		})
	}
}

// allotState is what the checker reads.
type allotState struct {
	a        *allotment
	products map[string]*flashorder.Product
	held     map[flashorder.QuotaKey]int64
	accepted []*flashorder.Order
}

// TestAllotmentCheck feeds the checker states that break each invariant: it
// reports each, as an unavailable error that wraps errAllotmentInvariant.
func TestAllotmentCheck(t *testing.T) {
	uB := flashorder.QuotaKey{UserID: "u1", SKU: "b"}
	// consistent: 2 units of a taken of 2, 1 of b within u1's limit of 1,
	// the fourth order refused.
	consistent := func() *allotState {
		batch := []*pendingOrder{
			testOrder(t, "u1", "", "a", 1), testOrder(t, "u2", "", "a", 1),
			testOrder(t, "u1", "k", "b", 1), testOrder(t, "u3", "", "a", 1),
		}
		a := newAllotment(batch, []error{nil, nil, nil, soldOut("a")})
		for _, p := range batch[:3] {
			a.inserted[p.order] = true
		}
		return &allotState{a: a,
			products: map[string]*flashorder.Product{"a": {SKU: "a", Stock: 2}, "b": {SKU: "b", Stock: 5, PerUserLimit: 1},
				"c": {SKU: "c", Stock: 1, PerUserLimit: 1}},
			// u1 holds 3 of c, over a limit lowered since: not the batch's doing.
			held:     map[flashorder.QuotaKey]int64{uB: 0, {UserID: "u1", SKU: "c"}: 3},
			accepted: []*flashorder.Order{batch[0].order, batch[1].order, batch[2].order},
		}
	}
	if s := consistent(); s.a.check("test", s.products, s.held, s.accepted) != nil {
		t.Fatalf("a consistent allotment: %v", s.a.check("test", s.products, s.held, s.accepted))
	}
	for _, tc := range []struct {
		name    string
		corrupt func(s *allotState)
	}{
		{"an order neither accepted nor refused", func(s *allotState) { s.a.answers[3] = nil }},
		{"an accepted order refused too", func(s *allotState) { s.a.answers[1] = soldOut("a") }},
		{"an order accepted twice", func(s *allotState) { s.accepted = append(s.accepted, s.accepted[2]) }},
		{"an accepted order not in the batch", func(s *allotState) {
			o := testOrder(t, "u4", "", "b", 1).order
			s.a.inserted[o] = true
			s.accepted = append(s.accepted, o)
		}},
		{"an accepted order not inserted", func(s *allotState) { delete(s.a.inserted, s.accepted[1]) }},
		{"two accepted orders with one key", func(s *allotState) { s.accepted[0].IdempotencyKey = "k" }},
		{"stock below zero", func(s *allotState) { s.products["a"].Stock = 1 }},
		{"stock of an unknown product", func(s *allotState) { delete(s.products, "a") }},
		{"a quota over its limit", func(s *allotState) { s.held[uB] = 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := consistent()
			tc.corrupt(s)
			err := s.a.check("test", s.products, s.held, s.accepted)
			if !errors.Is(err, errAllotmentInvariant) || flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE {
				t.Fatalf("check: %v, want unavailable wrapping errAllotmentInvariant", err)
			}
			t.Log(err)
		})
	}
}
