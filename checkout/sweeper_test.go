package checkout_test

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/gormdb"
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

// putWindowProduct puts a product whose orders get the payment window
// window (0: none, the lifecycle's PaymentTimeout applies).
func putWindowProduct(t *testing.T, db *gormdb.DB, sku string, stock, limit int64, window time.Duration) {
	t.Helper()
	p := flashorder.Product{SKU: sku, Name: sku, PriceCents: 100, Stock: stock, PerUserLimit: limit, PaymentWindow: window}
	if _, err := db.PutProduct(context.Background(), p); err != nil {
		t.Fatalf("put product %s: %v", sku, err)
	}
}

// manualClock is a clock that tests set by hand.
type manualClock struct{ at atomic.Pointer[time.Time] }

func newManualClock(t time.Time) *manualClock {
	c := &manualClock{}
	c.Set(t)
	return c
}

func (c *manualClock) Now() time.Time  { return *c.at.Load() }
func (c *manualClock) Set(t time.Time) { c.at.Store(&t) }

// clockedRow returns the row strategy on db stamping orders with a clock
// that starts at t0, and the clock.
func clockedRow(db *gormdb.DB, t0 time.Time) (*checkout.Row, *manualClock) {
	clock := newManualClock(t0)
	row := checkout.NewRow(db)
	row.Now = clock.Now
	return row, clock
}

// TestSweeperPaymentWindows runs the sweeper on every database with its
// clock set by hand, over orders of a product with a 1m payment window and
// of one without (the lifecycle's timeout, 10m, applies), placed one second
// apart: an order expires only once its own deadline has passed, never at
// it or before, in batches of 3 across both kinds; stock and per-user quota
// come back with every expiry.
func TestSweeperPaymentWindows(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	for _, tdb := range testenv.Databases(t) {
		t.Run(tdb.Engine, func(t *testing.T) {
			t.Parallel()
			db := placertest.Open(t, tdb.URL)
			t0 := time.Now().UTC().Truncate(time.Microsecond)
			row, placedAt := clockedRow(db, t0)
			clock := newManualClock(t0)
			lc := checkout.NewLifecycle(db)
			lc.PaymentTimeout = 10 * time.Minute
			lc.Now = clock.Now
			putWindowProduct(t, db, "win-1m", 100, 5, time.Minute)
			putWindowProduct(t, db, "win-none", 100, 5, 0)
			const n = 7
			for i := range n {
				placedAt.Set(t0.Add(time.Duration(i) * time.Second))
				o := place(t, row, fmt.Sprintf("w-%d", i), flashorder.ItemRequest{SKU: "win-1m", Quantity: 2})
				if want := t0.Add(time.Duration(i)*time.Second + time.Minute); o.ExpiresAt == nil || !o.ExpiresAt.Equal(want) {
					t.Fatalf("order of the 1m product placed at t0+%ds expires at %v, want %v", i, o.ExpiresAt, want)
				}
				if o := place(t, row, fmt.Sprintf("d-%d", i), flashorder.ItemRequest{SKU: "win-none", Quantity: 2}); o.ExpiresAt != nil {
					t.Fatalf("order of the product without a window expires at %v, want none", o.ExpiresAt)
				}
			}

			locker := inmem.NewLocker()
			defer locker.Close()
			var expired atomic.Int64
			var sweeps atomic.Int64
			s := checkout.NewSweeper(lc, locker, checkout.SweeperOptions{
				Interval: 5 * time.Millisecond,
				Logger:   slog.New(slog.DiscardHandler),
				Batch:    3,
				OnExpire: func(orders []*flashorder.Order) { expired.Add(int64(len(orders))) },
				OnSweep: func(_ int, err error) {
					if err != nil {
						t.Errorf("sweep: %v", err)
					}
					sweeps.Add(1)
				},
			})
			s.Start()
			defer s.Stop()
			// sweepAt sets the clock and waits for two sweeps, so that one
			// ran wholly at the new time.
			sweepAt := func(d time.Duration, want int64) {
				t.Helper()
				clock.Set(t0.Add(d))
				from := sweeps.Load()
				testenv.WaitFor(t, "two sweeps", 10*time.Second, func() bool { return sweeps.Load() >= from+2 })
				if got := expired.Load(); got != want {
					t.Fatalf("at t0+%v: %d orders expired, want %d", d, got, want)
				}
			}
			sweepAt(59*time.Second, 0)
			sweepAt(time.Minute, 0)
			sweepAt(time.Minute+3*time.Second, 3) // placed at t0, +1s, +2s; +3s is due only after
			sweepAt(time.Minute+(n-1)*time.Second, n-1)
			sweepAt(time.Minute+(n-1)*time.Second+time.Microsecond, n)
			if s := stockOf(t, db, "win-1m"); s != 100 {
				t.Fatalf("stock of win-1m %d after its orders expired, want 100", s)
			}
			sweepAt(10*time.Minute, n)
			sweepAt(10*time.Minute+(n-1)*time.Second+time.Microsecond, 2*n)
			s.Stop()
			if s := stockOf(t, db, "win-none"); s != 100 {
				t.Fatalf("stock of win-none %d after its orders expired, want 100", s)
			}
			assertAudit(t, db)
			// The quota came back: every user buys the full limit again.
			for i := range n {
				place(t, row, fmt.Sprintf("w-%d", i), flashorder.ItemRequest{SKU: "win-1m", Quantity: 5})
				place(t, row, fmt.Sprintf("d-%d", i), flashorder.ItemRequest{SKU: "win-none", Quantity: 5})
			}
			assertAudit(t, db)
		})
	}
}

// TestExpireDueOrder checks on every database that one expiry batch takes
// the orders whose window closed first, whichever kind of deadline they
// have: with a 2m default and a product with a 1m window, orders due at
// t0+30s (no window), t0+1m (window), t0+2m (window) and t0+2m10s (no
// window) expire one per batch in that order.
func TestExpireDueOrder(t *testing.T) {
	for _, tdb := range testenv.Databases(t) {
		t.Run(tdb.Engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := placertest.Open(t, tdb.URL)
			t0 := time.Now().UTC().Truncate(time.Microsecond)
			row, placedAt := clockedRow(db, t0)
			lc := checkout.NewLifecycle(db)
			lc.PaymentTimeout = 2 * time.Minute
			lc.Now = func() time.Time { return t0.Add(time.Hour) }
			putWindowProduct(t, db, "due-1m", 10, 0, time.Minute)
			putWindowProduct(t, db, "due-none", 10, 0, 0)
			at := func(d time.Duration, sku string) *flashorder.Order {
				placedAt.Set(t0.Add(d))
				return place(t, row, "u-"+sku, flashorder.ItemRequest{SKU: sku, Quantity: 1})
			}
			a1 := at(0, "due-1m")
			b1 := at(-90*time.Second, "due-none")
			a2 := at(time.Minute, "due-1m")
			b2 := at(10*time.Second, "due-none")
			for i, want := range []*flashorder.Order{b1, a1, a2, b2} {
				expired, err := lc.ExpireDue(ctx, 1)
				if err != nil || len(expired) != 1 || expired[0].ID != want.ID {
					t.Fatalf("batch %d expired %v (%v), want order %s", i, expired, err, want.ID)
				}
				if !reflect.DeepEqual(expired[0].ExpiresAt, want.ExpiresAt) {
					t.Fatalf("expired order %s reads expires_at %v, placed %v", want.ID, expired[0].ExpiresAt, want.ExpiresAt)
				}
			}
			if expired, err := lc.ExpireDue(ctx, 1); err != nil || len(expired) != 0 {
				t.Fatalf("a fifth batch expired %v (%v)", expired, err)
			}
			assertAudit(t, db)
		})
	}
}
