package checkout_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
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
			db := placertest.Open(t, dbi.URL)
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
	db := placertest.Open(t, testenv.SQLiteURL(t))
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

// heldStore holds every transaction until gate closes, so that orders wait in
// the batch queue behind the first one.
type heldStore struct {
	flashorder.Store
	entered chan struct{}
	once    sync.Once
	gate    chan struct{}
}

func (s *heldStore) InTx(ctx context.Context, fn func(flashorder.Tx) error) error {
	s.once.Do(func() { close(s.entered) })
	<-s.gate
	return s.Store.InTx(ctx, fn)
}

// TestBatchAbandonedOrderLeavesQueue ends the request of a queued order: it
// returns unavailable at once, leaves the queue, and is never ordered; an
// order already taken into a batch waits for its answer.
func TestBatchAbandonedOrderLeavesQueue(t *testing.T) {
	ctx := context.Background()
	db := placertest.Open(t, testenv.SQLiteURL(t))
	putProduct(t, db, "ab-1", 10, 0)
	store := &heldStore{Store: db, entered: make(chan struct{}), gate: make(chan struct{})}
	b := checkout.NewBatch(store, checkout.BatchOptions{Pipeline: 1})

	firstCtx, cancelFirst := context.WithCancel(ctx)
	first := make(chan error, 1)
	go func() { _, err := b.PlaceOrder(firstCtx, request("u-1", "ab-1", 1)); first <- err }()
	<-store.entered // the first order's batch waits at the gate

	gone, cancel := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() { _, err := b.PlaceOrder(gone, request("u-2", "ab-1", 1)); second <- err }()
	testenv.WaitFor(t, "the second order to queue", 10*time.Second, func() bool { return b.QueueDepth() == 1 })
	cancel()
	cancelFirst() // taken into a batch: must still get the batch's answer
	select {
	case err := <-second:
		if flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE {
			t.Fatalf("abandoned queued order: %v, want unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an abandoned queued order still waits")
	}
	if d := b.QueueDepth(); d != 0 {
		t.Fatalf("queue depth %d after the order left", d)
	}
	close(store.gate)
	if err := <-first; err != nil {
		t.Fatalf("order taken into a batch before its request ended: %v, want created", err)
	}
	// A later order's batch runs; the abandoned one is skipped for good.
	if _, err := b.PlaceOrder(ctx, request("u-3", "ab-1", 1)); err != nil {
		t.Fatal(err)
	}
	if p, _ := db.Product(ctx, "ab-1"); p.Sold != 2 {
		t.Fatalf("sold %d, want 2 (the abandoned order is not ordered)", p.Sold)
	}
	assertAudit(t, db)
}

// TestLimitGainedCountsEarlierOrders gives a product a per-user limit after
// orders were placed without one: the counters, kept only for limited
// products, are rebuilt from the active orders, so earlier units count.
func TestLimitGainedCountsEarlierOrders(t *testing.T) {
	for _, dbi := range testenv.Databases(t) {
		t.Run(dbi.Engine, func(t *testing.T) {
			ctx := context.Background()
			db := placertest.Open(t, dbi.URL)
			strategies := map[string]flashorder.OrderPlacer{"batch": checkout.NewBatch(db, checkout.BatchOptions{}), "row": checkout.NewRow(db)}
			for name, p := range strategies {
				sku := "gain-" + name
				putProduct(t, db, sku, 100, 0)
				for range 3 {
					if _, err := p.PlaceOrder(ctx, request("u-1", sku, 1)); err != nil {
						t.Fatal(err)
					}
				}
				putProduct(t, db, sku, 97, 4)
				if _, err := p.PlaceOrder(ctx, request("u-1", sku, 1)); err != nil {
					t.Fatalf("%s: fourth unit under a limit of 4: %v", name, err)
				}
				if _, err := p.PlaceOrder(ctx, request("u-1", sku, 1)); flashorder.ErrorCode(err) != flashorder.ELIMITEXCEEDED {
					t.Fatalf("%s: fifth unit under a limit of 4: %v, want limit_exceeded", name, err)
				}
				if _, err := p.PlaceOrder(ctx, request("u-2", sku, 4)); err != nil {
					t.Fatalf("%s: another user: %v", name, err)
				}
			}
			assertAudit(t, db)
		})
	}
}

// raisingStore runs raise, once armed, right before a batch locks its
// product rows: after the batch read the per-user counters without locks.
type raisingStore struct {
	flashorder.Store
	armed atomic.Bool
	raise func(ctx context.Context) error
}

// raisingTx is raisingStore's Tx on a store without flashorder.BatchTx.
type raisingTx struct {
	flashorder.Tx
	s *raisingStore
}

// raisingBatchTx is raisingStore's Tx on a store with flashorder.BatchTx.
type raisingBatchTx struct {
	*raisingTx
	bt flashorder.BatchTx
}

func (s *raisingStore) InTx(ctx context.Context, fn func(flashorder.Tx) error) error {
	return s.Store.InTx(ctx, func(tx flashorder.Tx) error {
		rt := &raisingTx{Tx: tx, s: s}
		if bt, ok := tx.(flashorder.BatchTx); ok {
			return fn(&raisingBatchTx{raisingTx: rt, bt: bt})
		}
		return fn(rt)
	})
}

func (s *raisingStore) beforeLock(ctx context.Context) error {
	if !s.armed.CompareAndSwap(true, false) {
		return nil
	}
	return s.raise(ctx)
}

func (t *raisingTx) LockProducts(ctx context.Context, skus []string) (map[string]*flashorder.Product, error) {
	if err := t.s.beforeLock(ctx); err != nil {
		return nil, err
	}
	return t.Tx.LockProducts(ctx, skus)
}

func (t *raisingBatchTx) ProductsAndQuotas(ctx context.Context, skus []string, keys []flashorder.QuotaKey, lock bool) (map[string]*flashorder.Product, map[flashorder.QuotaKey]int64, error) {
	if lock {
		if err := t.s.beforeLock(ctx); err != nil {
			return nil, nil, err
		}
	}
	return t.bt.ProductsAndQuotas(ctx, skus, keys, lock)
}

func (t *raisingBatchTx) TakeStocksAndCommit(ctx context.Context, take map[string]int64, add map[flashorder.QuotaKey]int64) error {
	return t.bt.TakeStocksAndCommit(ctx, take, add)
}

// TestBatchCounterRaisedBeforeLock: another writer (here the row strategy,
// as another instance would) raises a user's counter after a batch read it
// and before the batch locks the product. The batch still refuses the unit
// that would pass the limit, which its first read allowed: the counters
// read under the locks decide. A change that takes counters from the first
// read (issue 24) must keep this answer.
func TestBatchCounterRaisedBeforeLock(t *testing.T) {
	for _, dbi := range testenv.Databases(t) {
		t.Run(dbi.Engine, func(t *testing.T) {
			if dbi.Engine == "sqlite" {
				t.Skip("one connection: no other writer can run inside a batch's transaction")
			}
			t.Parallel()
			ctx := context.Background()
			db := placertest.Open(t, dbi.URL)
			row := checkout.NewRow(db)
			store := &raisingStore{Store: db, raise: func(ctx context.Context) error {
				_, err := row.PlaceOrder(ctx, request("u-1", "raised-1", 1))
				return err
			}}
			b := checkout.NewBatch(store, checkout.BatchOptions{})
			putProduct(t, db, "raised-1", 100, 3)
			for range 2 {
				if _, err := b.PlaceOrder(ctx, request("u-1", "raised-1", 1)); err != nil {
					t.Fatal(err)
				}
			}
			store.armed.Store(true)
			if _, err := b.PlaceOrder(ctx, request("u-1", "raised-1", 1)); flashorder.ErrorCode(err) != flashorder.ELIMITEXCEEDED {
				t.Fatalf("a third unit after another writer took it: %v, want limit_exceeded", err)
			}
			if store.armed.Load() {
				t.Fatal("the other writer did not run")
			}
			if held, err := db.QuotaHolders(ctx, "raised-1", 10); err != nil || held["u-1"] != 3 {
				t.Fatalf("counter: %v %v, want u-1: 3", held, err)
			}
			if _, err := b.PlaceOrder(ctx, request("u-2", "raised-1", 3)); err != nil {
				t.Fatalf("another user: %v", err)
			}
			assertAudit(t, db)
		})
	}
}
