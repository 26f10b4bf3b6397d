package checkout_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// recordingLocker hands out the real in-process locks and remembers them, so
// that the test can take a leader's lock away as a session expiry would.
type recordingLocker struct {
	*inmem.Locker
	mu    sync.Mutex
	locks []flashorder.Lock
}

func (r *recordingLocker) Lock(ctx context.Context, key string) (flashorder.Lock, error) {
	lk, err := r.Locker.Lock(ctx, key)
	if err == nil {
		r.mu.Lock()
		r.locks = append(r.locks, lk)
		r.mu.Unlock()
	}
	return lk, err
}

func (r *recordingLocker) last() flashorder.Lock {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.locks[len(r.locks)-1]
}

// instance is one sweeper with its own counters.
type instance struct {
	sweeper *checkout.Sweeper
	expired atomic.Int64
	leading atomic.Bool
}

func newInstance(lc *checkout.Lifecycle, locker flashorder.Locker) *instance {
	in := &instance{}
	in.sweeper = checkout.NewSweeper(lc, locker, checkout.SweeperOptions{
		Interval: 20 * time.Millisecond,
		Logger:   slog.New(slog.DiscardHandler),
		Batch:    3, // several batches per sweep
		OnExpire: func(orders []*flashorder.Order) { in.expired.Add(int64(len(orders))) },
		OnLeader: func(leading bool) { in.leading.Store(leading) },
	})
	return in
}

// TestSweeperElection runs two sweepers on one database and one Locker: only
// the leader expires orders, each once; when the leader loses its lock it
// steps down and the other one sweeps. Stopping both leaks no goroutine.
func TestSweeperElection(t *testing.T) {
	// Registered first, so it runs after every other cleanup (the database).
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	ctx := context.Background()
	db := placertest.Open(t, testenv.SQLiteURL(t))
	row := checkout.NewRow(db)
	lc := checkout.NewLifecycle(db)
	lc.PaymentTimeout = 50 * time.Millisecond
	locker := &recordingLocker{Locker: inmem.NewLocker()}
	defer locker.Close()

	putProduct(t, db, "sweep-1", 100, 0)
	placeN := func(n int, prefix string) {
		for i := range n {
			place(t, row, prefix+string(rune('a'+i)), flashorder.ItemRequest{SKU: "sweep-1", Quantity: 1})
		}
	}

	a := newInstance(lc, locker)
	a.sweeper.Start()
	testenv.WaitFor(t, "a leads", 10*time.Second, a.leading.Load)
	b := newInstance(lc, locker)
	b.sweeper.Start()
	defer b.sweeper.Stop()

	placeN(10, "first-")
	testenv.WaitFor(t, "10 orders expired", 10*time.Second, func() bool { return a.expired.Load()+b.expired.Load() == 10 })
	if b.expired.Load() != 0 || b.leading.Load() {
		t.Fatalf("the follower swept: a %d, b %d", a.expired.Load(), b.expired.Load())
	}
	if s := stockOf(t, db, "sweep-1"); s != 100 {
		t.Fatalf("stock %d after every order expired, want 100", s)
	}

	// The leader's session ends under it: it steps down and b takes over.
	if err := locker.last().Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "b leads", 10*time.Second, b.leading.Load)
	placeN(7, "second-")
	testenv.WaitFor(t, "7 more orders expired", 10*time.Second, func() bool { return a.expired.Load()+b.expired.Load() == 17 })
	if a.expired.Load() != 10 || b.expired.Load() != 7 {
		t.Fatalf("expired by a %d, by b %d: want 10 and 7", a.expired.Load(), b.expired.Load())
	}

	// The leader stops (orderd shut down): a, waiting again, takes over.
	b.sweeper.Stop()
	testenv.WaitFor(t, "a leads again", 10*time.Second, a.leading.Load)
	placeN(2, "third-")
	testenv.WaitFor(t, "2 more orders expired", 10*time.Second, func() bool { return a.expired.Load() == 12 })
	a.sweeper.Stop()
	if b.expired.Load() != 7 {
		t.Fatalf("a stopped sweeper expired orders: %d", b.expired.Load())
	}
	if s := stockOf(t, db, "sweep-1"); s != 100 {
		t.Fatalf("stock %d, want 100", s)
	}
	assertAudit(t, db)
}

// TestSweeperSparesPaidOrders checks that a paid order is never expired and
// that an order is expired only after its payment window.
func TestSweeperSparesPaidOrders(t *testing.T) {
	ctx := context.Background()
	db := placertest.Open(t, testenv.SQLiteURL(t))
	row := checkout.NewRow(db)
	lc := checkout.NewLifecycle(db)
	lc.PaymentTimeout = 300 * time.Millisecond
	putProduct(t, db, "spare-1", 10, 0)
	paid := place(t, row, "payer", flashorder.ItemRequest{SKU: "spare-1", Quantity: 1})
	unpaid := place(t, row, "dawdler", flashorder.ItemRequest{SKU: "spare-1", Quantity: 1})
	if _, err := lc.PayOrder(ctx, paid.ID); err != nil {
		t.Fatal(err)
	}
	if expired, err := lc.ExpireDue(ctx, 10); err != nil || len(expired) != 0 {
		t.Fatalf("expired %v (%v) inside the payment window", expired, err)
	}
	time.Sleep(350 * time.Millisecond)
	expired, err := lc.ExpireDue(ctx, 10)
	if err != nil || len(expired) != 1 || expired[0].ID != unpaid.ID || expired[0].Status != flashorder.StatusExpired {
		t.Fatalf("after the window: expired %v (%v), want only the unpaid order", expired, err)
	}
	if s := statusOf(t, db, paid.ID); s != flashorder.StatusPaid {
		t.Fatalf("paid order is %s", s)
	}
	if _, err := lc.PayOrder(ctx, unpaid.ID); flashorder.ErrorCode(err) != flashorder.EINVALIDSTATE {
		t.Fatalf("late payment: %v, want invalid_state", err)
	}
	// A cancelled context rolls the batch back: nothing is expired.
	late := place(t, row, "late", flashorder.ItemRequest{SKU: "spare-1", Quantity: 1})
	time.Sleep(350 * time.Millisecond)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := lc.ExpireDue(cctx, 10); err == nil {
		t.Fatal("ExpireDue with a dead context succeeded")
	}
	if s := statusOf(t, db, late.ID); s != flashorder.StatusCreated {
		t.Fatalf("order is %s after a rolled-back sweep", s)
	}
	if s := stockOf(t, db, "spare-1"); s != 8 {
		t.Fatalf("stock %d, want 8 (one paid, one pending)", s)
	}
	assertAudit(t, db)
}
