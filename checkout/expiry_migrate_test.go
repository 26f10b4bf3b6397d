package checkout_test

import (
	"context"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestExpiryAfterMigration checks on every database that orders stored
// before orders.expires_us existed keep the old rule: the migration adds the
// column (0, no deadline of their own) and its index, and such an order
// expires --payment-timeout after its creation, not before, while a new
// order of a product with a payment window gets and keeps its deadline.
func TestExpiryAfterMigration(t *testing.T) {
	for _, tdb := range testenv.Databases(t) {
		t.Run(tdb.Engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			t0 := time.Now().UTC().Truncate(time.Microsecond)

			// An orderd of before the column: its order, then the column
			// and index removed as if they had never been.
			old, err := gormdb.Open(ctx, tdb.URL, gormdb.Options{})
			if err != nil {
				t.Fatal(err)
			}
			putWindowProduct(t, old, "mig-1", 10, 0, 0)
			row, _ := clockedRow(old, t0)
			before := place(t, row, "mig-old", flashorder.ItemRequest{SKU: "mig-1", Quantity: 2})
			dropIndex := "DROP INDEX idx_orders_status_expires"
			if tdb.Engine == gormdb.MySQL {
				dropIndex += " ON orders"
			}
			for _, stmt := range []string{dropIndex, "ALTER TABLE orders DROP COLUMN expires_us"} {
				if err := old.Exec(ctx, stmt); err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}

			// This version opens it: the migration adds the column back.
			db := placertest.Open(t, tdb.URL)
			o, err := db.Order(ctx, before.ID)
			if err != nil || o.ExpiresAt != nil || o.Status != flashorder.StatusCreated {
				t.Fatalf("order from before the column reads %+v (%v), want created without expires_at", o, err)
			}
			putWindowProduct(t, db, "mig-1", 8, 0, time.Minute) // stock as it is, now with a window
			row, _ = clockedRow(db, t0)
			after := place(t, row, "mig-new", flashorder.ItemRequest{SKU: "mig-1", Quantity: 1})
			if want := t0.Add(time.Minute); after.ExpiresAt == nil || !after.ExpiresAt.Equal(want) {
				t.Fatalf("new order expires at %v, want %v", after.ExpiresAt, want)
			}

			clock := newManualClock(t0.Add(flashorder.DefaultPaymentTimeout))
			lc := checkout.NewLifecycle(db)
			lc.Now = clock.Now
			expired, err := lc.ExpireDue(ctx, 10)
			if err != nil || len(expired) != 1 || expired[0].ID != after.ID {
				t.Fatalf("at t0+15m expired %v (%v), want only the new order", expired, err)
			}
			clock.Set(t0.Add(flashorder.DefaultPaymentTimeout + time.Microsecond))
			expired, err = lc.ExpireDue(ctx, 10)
			if err != nil || len(expired) != 1 || expired[0].ID != before.ID {
				t.Fatalf("at t0+15m1µs expired %v (%v), want the order from before the column", expired, err)
			}
			if s := stockOf(t, db, "mig-1"); s != 10 {
				t.Fatalf("stock %d after both orders expired, want 10", s)
			}
			assertAudit(t, db)
		})
	}
}
