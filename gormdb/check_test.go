package gormdb_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestCheckInvariants breaks each invariant CheckInvariants checks, one at a
// time, on every database, and expects it reported; a sound database reports
// nothing.
func TestCheckInvariants(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) { testCheckInvariants(t, d.URL) })
	}
}

func testCheckInvariants(t *testing.T, url string) {
	ctx := context.Background()
	db, err := gormdb.Open(ctx, url, gormdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "inv-1", Name: "x", PriceCents: 5, Stock: 10, PerUserLimit: 2}); err != nil {
		t.Fatal(err)
	}
	place := func(user, key string, qty, total int64) string {
		t.Helper()
		o := &flashorder.Order{ID: uuid.NewString(), UserID: user, Status: flashorder.StatusCreated,
			Items:      []flashorder.OrderItem{{SKU: "inv-1", Quantity: qty, PriceCents: 5}},
			TotalCents: total, CreatedAt: time.Now().UTC().Truncate(time.Microsecond), IdempotencyKey: key, Fingerprint: "f"}
		if err := db.InTx(ctx, func(tx flashorder.Tx) error {
			if err := tx.TakeStocks(ctx, map[string]int64{"inv-1": qty}); err != nil {
				return err
			}
			_, err := tx.InsertOrders(ctx, []*flashorder.Order{o})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	check := func(answered []string, want string) {
		t.Helper()
		inv, err := db.CheckInvariants(ctx, answered)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(inv.Violations, "\n")
		if want == "" && !inv.OK() {
			t.Fatalf("a sound database: violations %q", got)
		}
		if want != "" && !strings.Contains(got, want) {
			t.Fatalf("violations %q, want one containing %q", got, want)
		}
	}

	id := place("u-1", "k-1", 2, 10)
	check([]string{id}, "")
	if n, err := db.CountOrdersWithKeys(ctx, []string{"k-1", "k-none", ""}); err != nil || n != 1 {
		t.Fatalf("orders with keys: %d, %v; want 1", n, err)
	}
	check([]string{id, uuid.NewString()}, "lost order: 1 of 2")
	place("u-1", "k-2", 1, 5) // u-1 now holds 3 of a limit of 2
	check(nil, "per-user limit: 1 users")
	place("u-2", "k-3", 1, 7) // a total that is not its items'
	check(nil, "partial order: 1 orders")
	if err := db.Exec(ctx, "UPDATE products SET stock = stock - 1 WHERE sku = ?", "inv-1"); err != nil {
		t.Fatal(err)
	}
	check(nil, "oversell: product inv-1")
}
