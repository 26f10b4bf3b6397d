package gormdb_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestEventsFollowOrders checks the outbox against the orders on every
// engine: InsertOrders writes one order.created per order it inserts (none
// for a key a stored order holds), DeleteOrders removes the events of the
// orders it removes, and a rolled-back transaction leaves no event.
func TestEventsFollowOrders(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) {
			ctx := context.Background()
			db := openWithEvents(t, d.URL)
			now := time.Now().UTC().Truncate(time.Microsecond)
			mk := func(id, key string) *flashorder.Order {
				return &flashorder.Order{ID: id, UserID: "u", Status: flashorder.StatusCreated, CreatedAt: now, IdempotencyKey: key,
					Fingerprint: "f", TotalCents: 5, Items: []flashorder.OrderItem{{SKU: "s", Quantity: 1, PriceCents: 5}}}
			}
			err := db.InTx(ctx, func(tx flashorder.Tx) error {
				if _, err := tx.InsertOrders(ctx, []*flashorder.Order{mk("o1", "k1"), mk("o2", "k2"), mk("o3", "")}); err != nil {
					return err
				}
				return tx.DeleteOrders(ctx, []string{"o2"})
			})
			if err != nil {
				t.Fatal(err)
			}
			err = db.InTx(ctx, func(tx flashorder.Tx) error {
				taken, err := tx.InsertOrders(ctx, []*flashorder.Order{mk("o4", "k1"), mk("o5", "k5")})
				if err != nil || !taken["k1"] {
					t.Errorf("key k1 not reported taken: %v %v", taken, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			_ = db.InTx(ctx, func(tx flashorder.Tx) error {
				if _, err := tx.InsertOrders(ctx, []*flashorder.Order{mk("o6", "")}); err != nil {
					return err
				}
				return flashorder.Errorf(flashorder.ESOLDOUT, "rolled back")
			})
			evs, err := db.PendingEvents(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range evs {
				if e.Type != flashorder.EventOrderCreated || e.Sequence != 1 || !e.Time.Equal(now) {
					t.Errorf("event %+v", e)
				}
				got = append(got, e.OrderID)
			}
			if len(got) != 3 || got[0] != "o1" || got[1] != "o3" || got[2] != "o5" {
				t.Errorf("events of orders %v, want o1 o3 o5", got)
			}
			if rows, oldest, err := db.Backlog(ctx); err != nil || rows != 3 || !oldest.Equal(now) {
				t.Errorf("backlog %d, oldest %v (%v)", rows, oldest, err)
			}
		})
	}
}

// TestPurgeEvents checks the retention's delete on every engine: sent events
// sent before the bound go, oldest first and limit at a time; the one at the
// bound's cursor, pending ones and dead letters stay.
func TestPurgeEvents(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) {
			ctx := context.Background()
			db := openWithEvents(t, d.URL)
			evs := fiveOrders(t, db)
			// o1, o2 sent, o3 dead, o4 sent (the newest), o5 pending.
			var settled []flashorder.Settlement
			for i, state := range []flashorder.EventState{flashorder.EventSent, flashorder.EventSent, flashorder.EventDead, flashorder.EventSent} {
				settled = append(settled, flashorder.Settlement{Position: evs[i].Position, State: state, Attempts: 1, Cursor: int64(i + 1)})
			}
			if err := db.SettleEvents(ctx, settled); err != nil {
				t.Fatal(err)
			}
			// All or nothing: o5 settled beside o1, which is no longer
			// pending, is refused whole, and o5 stays pending.
			err := db.SettleEvents(ctx, []flashorder.Settlement{
				{Position: evs[4].Position, State: flashorder.EventSent, Attempts: 1, Cursor: 5},
				{Position: evs[0].Position, State: flashorder.EventSent, Attempts: 1, Cursor: 6},
			})
			if flashorder.ErrorCode(err) != flashorder.EINVALIDSTATE {
				t.Fatalf("settling an event no longer pending: %v, want %s", err, flashorder.EINVALIDSTATE)
			}
			if pending, err := db.PendingEvents(ctx, 10); err != nil || len(pending) != 1 || pending[0].Position != evs[4].Position {
				t.Fatalf("after a refused settlement %d events pending (%v), want o5 alone", len(pending), err)
			}
			later := time.Now().Add(time.Hour)
			if n, err := db.PurgeEvents(ctx, time.Now().Add(-time.Hour), 4, 10); err != nil || n != 0 {
				t.Fatalf("purge of events sent before an hour ago: %d (%v), want 0", n, err)
			}
			if n, err := db.PurgeEvents(ctx, later, 4, 1); err != nil || n != 1 {
				t.Fatalf("purge with limit 1: %d (%v), want 1", n, err)
			}
			if n, err := db.PurgeEvents(ctx, later, 4, 10); err != nil || n != 1 {
				t.Fatalf("second purge: %d (%v), want 1 (o2; o4 is at the bound)", n, err)
			}
			page, err := db.Events(ctx, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, e := range page.Events {
				left = append(left, e.OrderID)
			}
			if len(left) != 2 || left[0] != "o3" || left[1] != "o4" {
				t.Errorf("after the purge the feed holds %v, want o3 (dead) and o4 (the newest)", left)
			}
			if last, err := db.LastCursor(ctx); err != nil || last != 4 {
				t.Errorf("last cursor %d (%v), want 4", last, err)
			}
			if rows, _, err := db.Backlog(ctx); err != nil || rows != 1 {
				t.Errorf("backlog %d (%v), want 1 (o5)", rows, err)
			}
		})
	}
}

// TestPendingEventsExcept checks on every engine the relay's read that
// leaves out its events in flight, and the settlement of a batch: each
// event's state, attempts and cursor as given, and a cursor given already
// refused with the whole batch.
func TestPendingEventsExcept(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) {
			db := openWithEvents(t, d.URL)
			all, ctx := fiveOrders(t, db), context.Background()
			except := []int64{all[1].Position, all[3].Position}
			if evs, err := db.PendingEventsExcept(ctx, 2, except); err != nil || !slices.Equal(orderIDs(evs), []string{"o1", "o3"}) {
				t.Errorf("2 pending except o2, o4: %v (%v), want o1 o3", orderIDs(evs), err)
			}
			if evs, err := db.PendingEventsExcept(ctx, 10, except); err != nil || !slices.Equal(orderIDs(evs), []string{"o1", "o3", "o5"}) {
				t.Errorf("10 pending except o2, o4: %v (%v), want o1 o3 o5", orderIDs(evs), err)
			}
			err := db.SettleEvents(ctx, []flashorder.Settlement{
				{Position: all[2].Position, State: flashorder.EventSent, Attempts: 1, Cursor: 1},
				{Position: all[0].Position, State: flashorder.EventDead, Attempts: 7, Cursor: 2},
				{Position: all[4].Position, State: flashorder.EventSent, Attempts: 3, Cursor: 3},
			})
			if err != nil {
				t.Fatal(err)
			}
			page, err := db.Events(ctx, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range page.Events {
				got = append(got, fmt.Sprintf("%s %s %d %d", e.OrderID, e.State, e.Attempts, e.Cursor))
			}
			if want := []string{"o3 sent 1 1", "o1 dead 7 2", "o5 sent 3 3"}; !slices.Equal(got, want) {
				t.Errorf("settled %q, want %q", got, want)
			}
			// Cursor 3 is given: the batch is refused whole, o2 stays pending.
			err = db.SettleEvents(ctx, []flashorder.Settlement{
				{Position: all[1].Position, State: flashorder.EventSent, Attempts: 1, Cursor: 4},
				{Position: all[3].Position, State: flashorder.EventSent, Attempts: 1, Cursor: 3},
			})
			if err == nil {
				t.Fatal("a cursor given twice was accepted")
			}
			if evs, err := db.PendingEvents(ctx, 10); err != nil || !slices.Equal(orderIDs(evs), []string{"o2", "o4"}) {
				t.Errorf("pending after the refused batch: %v (%v), want o2 o4", orderIDs(evs), err)
			}
		})
	}
}

// fiveOrders places the orders o1 to o5 in one transaction and returns their
// events, pending, in outbox order.
func fiveOrders(t *testing.T, db *gormdb.DB) []*flashorder.Event {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, func(tx flashorder.Tx) error {
		var orders []*flashorder.Order
		for _, id := range []string{"o1", "o2", "o3", "o4", "o5"} {
			orders = append(orders, &flashorder.Order{ID: id, UserID: "u", Status: flashorder.StatusCreated, CreatedAt: time.Now().UTC(),
				Fingerprint: "f", Items: []flashorder.OrderItem{{SKU: "s", Quantity: 1}}})
		}
		_, err := tx.InsertOrders(ctx, orders)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := db.PendingEvents(ctx, 10)
	if err != nil || len(evs) != 5 {
		t.Fatalf("%d events (%v)", len(evs), err)
	}
	return evs
}

// orderIDs returns the order ids of evs, in their order.
func orderIDs(evs []*flashorder.Event) (ids []string) {
	for _, e := range evs {
		ids = append(ids, e.OrderID)
	}
	return ids
}

// openWithEvents opens the database at url with events on, closed when the
// test ends.
func openWithEvents(t *testing.T, url string) *gormdb.DB {
	t.Helper()
	db, err := gormdb.Open(context.Background(), url, gormdb.Options{Events: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
