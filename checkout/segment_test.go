package checkout_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// recordingStore records, per transaction, the segment calls made in it.
type recordingStore struct {
	flashorder.Store
	mu  sync.Mutex
	txs [][]string
}

func (s *recordingStore) InTx(ctx context.Context, fn func(flashorder.Tx) error) error {
	var calls []string
	err := s.Store.InTx(ctx, func(tx flashorder.Tx) error {
		calls = calls[:0]
		return fn(&recordingTx{Tx: tx, calls: &calls})
	})
	s.mu.Lock()
	s.txs = append(s.txs, slices.Clone(calls))
	s.mu.Unlock()
	return err
}

func (s *recordingStore) take() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	txs := s.txs
	s.txs = nil
	return txs
}

type recordingTx struct {
	flashorder.Tx
	calls *[]string
}

func (t *recordingTx) TakeFromSegment(ctx context.Context, sku string, qty int64, n int) (bool, error) {
	ok, err := t.Tx.TakeFromSegment(ctx, sku, qty, n)
	*t.calls = append(*t.calls, fmt.Sprintf("take %s %v", sku, ok))
	return ok, err
}

func (t *recordingTx) RefillSegments(ctx context.Context, sku string, qty int64, n int) (bool, error) {
	ok, err := t.Tx.RefillSegments(ctx, sku, qty, n)
	*t.calls = append(*t.calls, fmt.Sprintf("refill %s %v", sku, ok))
	return ok, err
}

// TestSegmentRefillsInANewTransaction: an order that finds no segment with
// its units ends that transaction and refills in a new one, never in the
// transaction whose look at the segments may have left one locked (the
// refill locks the product row first, and that would invert the lock order).
func TestSegmentRefillsInANewTransaction(t *testing.T) {
	ctx := context.Background()
	db := placertest.Open(t, testenv.SQLiteURL(t))
	putProduct(t, db, "seg-a", 100, 0)
	putProduct(t, db, "seg-b", 3, 0)
	store := &recordingStore{Store: db}
	s := checkout.NewSegment(store)
	s.Segments = 4
	place := func(user string, items ...flashorder.ItemRequest) error {
		req := flashorder.OrderRequest{UserID: user, Items: items}
		_, err := s.PlaceOrder(ctx, &flashorder.PlaceOrderRequest{OrderRequest: req, Fingerprint: req.Fingerprint()})
		return err
	}
	for _, step := range []struct {
		items []flashorder.ItemRequest
		code  string
		txs   [][]string
	}{
		// No segments yet: both SKUs are refilled, each after a
		// transaction that found nothing; the second attempt's refill of
		// seg-a was rolled back with it, so the third refills it again.
		{[]flashorder.ItemRequest{{SKU: "seg-a", Quantity: 1}, {SKU: "seg-b", Quantity: 1}}, "", [][]string{
			{"take seg-a false"},
			{"refill seg-a true", "take seg-b false"},
			{"refill seg-a true", "refill seg-b true"},
		}},
		// seg-a's 98 units sit in 4 segments: the fast path.
		{[]flashorder.ItemRequest{{SKU: "seg-a", Quantity: 5}}, "", [][]string{{"take seg-a true"}}},
		// seg-b's last 2 units are in one segment (at least 8 per
		// segment, fewer segments when little is left): taken whole.
		{[]flashorder.ItemRequest{{SKU: "seg-b", Quantity: 2}}, "", [][]string{{"take seg-b true"}}},
		// Sold out: the fast path finds nothing, the refill path's
		// total is short, and nothing changes.
		{[]flashorder.ItemRequest{{SKU: "seg-b", Quantity: 1}}, flashorder.ESOLDOUT, [][]string{
			{"take seg-b false"},
			{"refill seg-b false"},
		}},
	} {
		err := place("u", step.items...)
		if code := flashorder.ErrorCode(err); code != step.code {
			t.Fatalf("order %v: %v, want code %q", step.items, err, step.code)
		}
		if got := store.take(); !slices.EqualFunc(got, step.txs, slices.Equal[[]string]) {
			t.Fatalf("order %v: transactions %q, want %q", step.items, got, step.txs)
		}
	}
	if a, b := stockOf(t, db, "seg-a"), stockOf(t, db, "seg-b"); a != 94 || b != 0 {
		t.Fatalf("stock seg-a %d seg-b %d, want 94 and 0", a, b)
	}
	assertAudit(t, db)
}
