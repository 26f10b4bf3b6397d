package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/metrics"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// histogram returns the sample count and sum of the histogram name (with the
// given label value, if any) in reg.
func histogram(t *testing.T, reg *prometheus.Registry, name, label string) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || hasLabel(m, label) {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

func hasLabel(m *dto.Metric, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetValue() == value {
			return true
		}
	}
	return false
}

func TestLockerMetrics(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	lm := metrics.NewLockMetrics()
	if err := lm.Register(reg); err != nil {
		t.Fatal(err)
	}
	inner := inmem.NewLocker()
	locker := lm.Wrap(inner, "memory")
	var _ flashorder.Locker = locker

	// Released normally: waited once, held once, not lost.
	lk, err := locker.Lock(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if lk.Key() != "k1" || lk.Token() == 0 {
		t.Errorf("the wrapped lock hides the inner one: key %q token %d", lk.Key(), lk.Token())
	}
	time.Sleep(20 * time.Millisecond)
	if err := lk.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if n, sum := histogram(t, reg, "flashorder_lock_hold_seconds", "memory"); n != 1 || sum < 0.02 {
		t.Errorf("hold after one 20ms lock: count %d sum %v", n, sum)
	}
	if n, _ := histogram(t, reg, "flashorder_lock_wait_seconds", "memory"); n != 1 {
		t.Errorf("wait count %d, want 1", n)
	}

	// A waiter that gives up counts as an error, not a wait.
	held, err := locker.Lock(ctx, "k2")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	_, err = locker.Lock(short, "k2")
	cancel()
	if err == nil {
		t.Fatal("a second Lock on a held key succeeded")
	}
	if got := count(t, reg, "flashorder_lock_errors_total"); got != 1 {
		t.Errorf("lock errors %v, want 1", got)
	}

	// Lost (the backend session ends) before Unlock: counted once, even
	// when the holder calls Unlock afterwards.
	inner.Close()
	deadline := time.Now().Add(5 * time.Second)
	for count(t, reg, "flashorder_locks_lost_total") < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := held.Unlock(ctx); !errors.Is(err, flashorder.ErrLockNotHeld) {
		t.Errorf("Unlock of a lost lock: %v, want ErrLockNotHeld", err)
	}
	if got := count(t, reg, "flashorder_locks_lost_total"); got != 1 {
		t.Errorf("lost locks %v, want 1", got)
	}
	if n, _ := histogram(t, reg, "flashorder_lock_hold_seconds", "memory"); n != 2 {
		t.Errorf("hold count %d, want 2", n)
	}
}

func count(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// gatedStore holds the first transaction until gate closes, so that orders
// pile up in the batch queue behind it.
type gatedStore struct {
	flashorder.Store
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
}

func (s *gatedStore) InTx(ctx context.Context, fn func(flashorder.Tx) error) error {
	s.once.Do(func() {
		close(s.entered)
		<-s.gate
	})
	return s.Store.InTx(ctx, fn)
}

// hotSKUStore opens a SQLite store, closed when t ends, with the product
// hot-1 in stock 40.
func hotSKUStore(t *testing.T) *gormdb.DB {
	t.Helper()
	ctx := context.Background()
	db, err := gormdb.Open(ctx, testenv.SQLiteURL(t), gormdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "hot-1", Name: "Phone", PriceCents: 100, Stock: 40}); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestBatchMetrics places orders through the batch strategy while its first
// transaction is held, and checks queue depth, batch sizes and transaction
// times.
func TestBatchMetrics(t *testing.T) {
	ctx := context.Background()
	db := hotSKUStore(t)
	store := &gatedStore{Store: db, entered: make(chan struct{}), gate: make(chan struct{})}
	bm := metrics.NewBatchMetrics()
	b := checkout.NewBatch(store, checkout.BatchOptions{Observe: bm.Observe, ObserveRowsHeld: bm.RowsHeld, Pipeline: 1})
	reg := prometheus.NewRegistry()
	if err := bm.Register(reg, b.QueueDepth); err != nil {
		t.Fatal(err)
	}
	if err := metrics.NewBatchMetrics().Register(reg, b.QueueDepth); err == nil {
		t.Error("a second batch metrics on one registry registered")
	}

	const queued = 49
	place := func(i int, wg *sync.WaitGroup, errs chan<- error) {
		defer wg.Done()
		_, err := b.PlaceOrder(ctx, &flashorder.PlaceOrderRequest{OrderRequest: flashorder.OrderRequest{
			UserID: fmt.Sprintf("u-%d", i), Items: []flashorder.ItemRequest{{SKU: "hot-1", Quantity: 1}}}})
		errs <- err
	}
	var wg sync.WaitGroup
	errs := make(chan error, queued+1)
	wg.Add(1)
	go place(0, &wg, errs)
	<-store.entered // the first batch (one order) holds the transaction
	for i := 1; i <= queued; i++ {
		wg.Add(1)
		go place(i, &wg, errs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.QueueDepth() < queued && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := count(t, reg, "flashorder_batch_queue_depth"); got != queued {
		t.Fatalf("queue depth %v while %d orders wait, want %d", got, queued, queued)
	}
	close(store.gate)
	wg.Wait()
	close(errs)
	created, soldOut := 0, 0
	for err := range errs {
		switch flashorder.ErrorCode(err) {
		case "":
			created++
		case flashorder.ESOLDOUT:
			soldOut++
		default:
			t.Errorf("order: %v", err)
		}
	}
	if created != 40 || soldOut != 10 {
		t.Errorf("created %d, sold out %d; want 40 and 10", created, soldOut)
	}
	n, sum := histogram(t, reg, "flashorder_batch_size", "")
	if sum != queued+1 || n < 2 || n > queued {
		t.Errorf("batch sizes: %d batches summing to %v; want the first alone and the %d queued in few batches", n, sum, queued)
	}
	tn, tsum := histogram(t, reg, "flashorder_batch_transaction_seconds", "")
	if tn != n || tsum <= 0 {
		t.Errorf("transaction times: count %d sum %v, want count %d", tn, tsum, n)
	}
	// Every batch committed, and each held its rows for part of its
	// transaction.
	hn, hsum := histogram(t, reg, "flashorder_batch_rows_held_seconds", "")
	if hn != n || hsum <= 0 || hsum > tsum {
		t.Errorf("rows held: count %d sum %v; want count %d and a sum in (0, %v], the transactions' time", hn, hsum, n, tsum)
	}
	if b.QueueDepth() != 0 || count(t, reg, "flashorder_batch_errors_total") != 0 {
		t.Errorf("after the orders: depth %d errors %v", b.QueueDepth(), count(t, reg, "flashorder_batch_errors_total"))
	}
}

// TestLockStrategyMetrics: an order whose lock token is older than the one
// already written on its product row is refused by the fence and counted.
func TestLockStrategyMetrics(t *testing.T) {
	ctx := context.Background()
	db := hotSKUStore(t)
	locker := inmem.NewLocker()
	defer locker.Close()
	lm := metrics.NewLockStrategyMetrics()
	l := checkout.NewLockStrategy(db, locker, checkout.LockStrategyOptions{OnFenced: lm.Fenced})
	reg := prometheus.NewRegistry()
	if err := lm.Register(reg); err != nil {
		t.Fatal(err)
	}
	order := func(user string) error {
		_, err := l.PlaceOrder(ctx, &flashorder.PlaceOrderRequest{OrderRequest: flashorder.OrderRequest{
			UserID: user, Items: []flashorder.ItemRequest{{SKU: "hot-1", Quantity: 1}}}})
		return err
	}
	if err := order("u-1"); err != nil {
		t.Fatal(err)
	}
	if got := count(t, reg, "flashorder_lock_fence_refusals_total"); got != 0 {
		t.Fatalf("fence refusals %v after a normal order, want 0", got)
	}
	// Another process's newer holder wrote its token on the row.
	if err := db.InTx(ctx, func(tx flashorder.Tx) error {
		_, err := tx.Fence(ctx, "hot-1", math.MaxInt64)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := order("u-2"); flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE {
		t.Fatalf("order with a stale token: %v, want unavailable", err)
	}
	if got := count(t, reg, "flashorder_lock_fence_refusals_total"); got != 1 {
		t.Errorf("fence refusals %v, want 1", got)
	}
}
