package checkout_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/internal/testenv"
)

// faultyStore fails the transaction's order insert when armed, after the
// batch already took stock and quotas in it.
type faultyStore struct {
	flashorder.Store
	armed atomic.Bool
}

type faultyTx struct {
	flashorder.Tx
	s *faultyStore
}

var errInjected = errors.New("injected fault")

func (s *faultyStore) InTx(ctx context.Context, fn func(flashorder.Tx) error) error {
	return s.Store.InTx(ctx, func(tx flashorder.Tx) error { return fn(&faultyTx{Tx: tx, s: s}) })
}

func (t *faultyTx) InsertOrders(ctx context.Context, orders []*flashorder.Order) (map[string]bool, error) {
	if t.s.armed.Load() {
		return nil, errInjected
	}
	return t.Tx.InsertOrders(ctx, orders)
}

func placeMany(b *checkout.Batch, n int, sku string, limitUser bool) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("u-%d", i)
			if limitUser {
				user = "same-user"
			}
			req := flashorder.OrderRequest{UserID: user, Items: []flashorder.ItemRequest{{SKU: sku, Quantity: 1}}}
			_, errs[i] = b.PlaceOrder(context.Background(), &flashorder.PlaceOrderRequest{OrderRequest: req, Fingerprint: req.Fingerprint()})
		}()
	}
	wg.Wait()
	return errs
}

// TestBatchFaultMidTransaction injects a failure after a batch took stock and
// quotas: every order of the failed batches gets 503 unavailable and the
// database is exactly as before; disarmed, the same orders go through.
func TestBatchFaultMidTransaction(t *testing.T) {
	for _, dbi := range testenv.Databases(t) {
		t.Run(dbi.Engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := openDB(t, dbi.URL)
			store := &faultyStore{Store: db}
			b := checkout.NewBatch(store, checkout.BatchOptions{})
			if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "fault-1", Name: "x", PriceCents: 5, Stock: 50, PerUserLimit: 0}); err != nil {
				t.Fatal(err)
			}
			store.armed.Store(true)
			for i, err := range placeMany(b, 40, "fault-1", false) {
				if flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE || !errors.Is(err, errInjected) {
					t.Fatalf("order %d in a failed batch: %v, want unavailable", i, err)
				}
			}
			a, err := db.Audit(ctx)
			if err != nil || !a.OK || a.Products[0].Available != 50 || a.Products[0].Sold != 0 {
				t.Fatalf("after failed batches: %+v %v", a, err)
			}
			store.armed.Store(false)
			for i, err := range placeMany(b, 40, "fault-1", false) {
				if err != nil {
					t.Fatalf("order %d after the fault: %v", i, err)
				}
			}
			// The per-user counters were rolled back too: one user with a
			// limit of 1 can still buy exactly once.
			if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "fault-2", Name: "x", PriceCents: 5, Stock: 50, PerUserLimit: 1}); err != nil {
				t.Fatal(err)
			}
			store.armed.Store(true)
			placeMany(b, 5, "fault-2", true)
			store.armed.Store(false)
			var created, limited int
			for _, err := range placeMany(b, 5, "fault-2", true) {
				switch flashorder.ErrorCode(err) {
				case "":
					created++
				case flashorder.ELIMITEXCEEDED:
					limited++
				default:
					t.Fatalf("unexpected %v", err)
				}
			}
			if created != 1 || limited != 4 {
				t.Fatalf("after a failed batch, one user with limit 1: %d created, %d limited", created, limited)
			}
			if a, err := db.Audit(ctx); err != nil || !a.OK {
				t.Fatalf("audit %+v %v", a, err)
			}
		})
	}
}

// TestBatchQueueBound refuses orders beyond the queue bound at once.
func TestBatchQueueBound(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, testenv.SQLiteURL(t))
	if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "q-1", Name: "x", PriceCents: 5, Stock: 1000}); err != nil {
		t.Fatal(err)
	}
	b := checkout.NewBatch(db, checkout.BatchOptions{MaxQueue: 5, MaxBatch: 5})
	var overloaded, created int
	for _, err := range placeMany(b, 300, "q-1", false) {
		switch flashorder.ErrorCode(err) {
		case "":
			created++
		case flashorder.EOVERLOADED:
			overloaded++
		default:
			t.Fatalf("unexpected %v", err)
		}
	}
	if overloaded == 0 || created == 0 || overloaded+created != 300 {
		t.Fatalf("queue bound 5, 300 at once: %d created, %d overloaded", created, overloaded)
	}
	if p, _ := db.Product(ctx, "q-1"); p.Sold != int64(created) {
		t.Fatalf("sold %d, created %d", p.Sold, created)
	}
}
