package checkout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestEventsOutbox runs every strategy with events on, on every database: a
// crowd of orders for too little stock, with a per-user limit and a repeated
// Idempotency-Key, then a payment, a cancel and an expiry. The outbox must
// hold exactly one order.created per accepted order, none for a refusal, the
// order as stored, and each ended order's event with the next sequence.
func TestEventsOutbox(t *testing.T) {
	strategies := map[string]func(store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer{
		"row": func(store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer {
			r := checkout.NewRow(store)
			r.Now = now
			return r
		},
		"segment": func(store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer {
			s := checkout.NewSegment(store)
			s.Now = now
			return s
		},
		"lock": func(store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer {
			return checkout.NewLockStrategy(store, inmem.NewLocker(), checkout.LockStrategyOptions{Now: now})
		},
		"batch": func(store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer {
			return checkout.NewBatch(store, checkout.BatchOptions{Now: now})
		},
	}
	for _, name := range []string{"row", "segment", "lock", "batch"} {
		t.Run(name, func(t *testing.T) {
			for _, d := range testenv.Databases(t) {
				t.Run(d.Engine, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					db, err := gormdb.Open(ctx, d.URL, gormdb.Options{Events: true})
					if err != nil {
						t.Fatal(err)
					}
					defer db.Close()
					runEventsOutbox(ctx, t, db, strategies[name](db, time.Now))
				})
			}
		})
	}
}

func runEventsOutbox(ctx context.Context, t *testing.T, db *gormdb.DB, placer flashorder.OrderPlacer) {
	t.Helper()
	putProduct(t, db, "hot", 20, 2)
	putProduct(t, db, "cold", 1000, 0)
	const buyers = 40
	var mu sync.Mutex
	accepted := map[string]*flashorder.Order{}
	refused := 0
	var wg sync.WaitGroup
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("u%d", i%15) // some users try past their limit of 2
			req := flashorder.OrderRequest{UserID: user, Items: []flashorder.ItemRequest{{SKU: "hot", Quantity: 1}, {SKU: "cold", Quantity: 2}}}
			key := ""
			if i%10 == 0 {
				key = "same-key" // one order for all of these
			}
			o, err := placer.PlaceOrder(ctx, &flashorder.PlaceOrderRequest{OrderRequest: req, IdempotencyKey: key, Fingerprint: req.Fingerprint()})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				accepted[o.ID] = o
			case errors.Is(err, flashorder.ErrIdempotencyKeyTaken), flashorder.ErrorCode(err) == flashorder.ESOLDOUT,
				flashorder.ErrorCode(err) == flashorder.ELIMITEXCEEDED:
				refused++
			default:
				t.Errorf("order %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if len(accepted) == 0 || refused == 0 {
		t.Fatalf("%d accepted, %d refused: the test needs both", len(accepted), refused)
	}
	assertAudit(t, db)

	byOrder := outboxByOrder(ctx, t, db)
	if len(byOrder) != len(accepted) {
		t.Errorf("the outbox has events of %d orders, %d were accepted", len(byOrder), len(accepted))
	}
	for id, o := range accepted {
		evs := byOrder[id]
		if len(evs) != 1 || evs[0].Type != flashorder.EventOrderCreated || evs[0].Sequence != 1 {
			t.Errorf("order %s: events %+v, want one order.created with sequence 1", id, evs)
			continue
		}
		var got flashorder.Order
		if err := json.Unmarshal(evs[0].Order, &got); err != nil {
			t.Fatal(err)
		}
		if got.ID != o.ID || got.Status != flashorder.StatusCreated || got.TotalCents != o.TotalCents || len(got.Items) != 2 || got.Items[0].PriceCents != 100 {
			t.Errorf("order %s: the event's order is %+v, the placed one %+v", id, got, o)
		}
	}

	// The lifecycle: one payment, one cancel, one expiry.
	var ids []string
	for id := range accepted {
		ids = append(ids, id)
	}
	if len(ids) < 3 {
		t.Fatalf("%d orders accepted, want at least 3", len(ids))
	}
	lc := checkout.NewLifecycle(db)
	if _, err := lc.PayOrder(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.CancelOrder(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.CancelOrder(ctx, ids[1]); flashorder.ErrorCode(err) != flashorder.EINVALIDSTATE {
		t.Fatalf("second cancel: %v, want invalid_state", err) // and no event
	}
	lc.Now = func() time.Time { return time.Now().Add(2 * flashorder.DefaultPaymentTimeout) }
	if _, err := lc.PayOrder(ctx, ids[2]); flashorder.ErrorCode(err) != flashorder.EINVALIDSTATE {
		t.Fatalf("late payment: %v, want invalid_state (the order expires)", err)
	}
	byOrder = outboxByOrder(ctx, t, db)
	for i, want := range []flashorder.EventType{flashorder.EventOrderPaid, flashorder.EventOrderCancelled, flashorder.EventOrderExpired} {
		evs := byOrder[ids[i]]
		if len(evs) != 2 || evs[0].Sequence != 1 || evs[1].Sequence != 2 || evs[1].Type != want {
			t.Errorf("order %s: events %+v, want order.created then %s, sequences 1 and 2", ids[i], evs, want)
			continue
		}
		var got flashorder.Order
		if err := json.Unmarshal(evs[1].Order, &got); err != nil {
			t.Fatal(err)
		}
		if flashorder.EventTypeFor(got.Status) != want || len(got.Items) != 2 {
			t.Errorf("order %s: the %s event holds %+v", ids[i], want, got)
		}
	}
	assertAudit(t, db)
}

// outboxByOrder returns every pending event of the outbox by order, each
// order's in outbox order.
func outboxByOrder(ctx context.Context, t *testing.T, db *gormdb.DB) map[string][]*flashorder.Event {
	t.Helper()
	evs, err := db.PendingEvents(ctx, 100000)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]*flashorder.Event{}
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.ID] {
			t.Errorf("event id %s twice", e.ID)
		}
		seen[e.ID] = true
		m[e.OrderID] = append(m[e.OrderID], e)
	}
	return m
}

// TestEventsOff checks that a store without Options.Events writes no event.
func TestEventsOff(t *testing.T) {
	ctx := context.Background()
	db, err := gormdb.Open(ctx, testenv.SQLiteURL(t), gormdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	putProduct(t, db, "p", 5, 0)
	row := checkout.NewRow(db)
	o := place(t, row, "u1", flashorder.ItemRequest{SKU: "p", Quantity: 1})
	if _, err := checkout.NewLifecycle(db).CancelOrder(ctx, o.ID); err != nil {
		t.Fatal(err)
	}
	if evs, err := db.PendingEvents(ctx, 10); err != nil || len(evs) != 0 {
		t.Fatalf("events off: outbox holds %d events (%v)", len(evs), err)
	}
}
