package gormdb_test

import (
	"context"
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
			db, err := gormdb.Open(ctx, d.URL, gormdb.Options{Events: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			now := time.Now().UTC().Truncate(time.Microsecond)
			mk := func(id, key string) *flashorder.Order {
				return &flashorder.Order{ID: id, UserID: "u", Status: flashorder.StatusCreated, CreatedAt: now, IdempotencyKey: key,
					Fingerprint: "f", TotalCents: 5, Items: []flashorder.OrderItem{{SKU: "s", Quantity: 1, PriceCents: 5}}}
			}
			err = db.InTx(ctx, func(tx flashorder.Tx) error {
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
