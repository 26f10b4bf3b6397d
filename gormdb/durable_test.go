package gormdb_test

import (
	"context"
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestWaitDurable checks WaitDurable on every database: it returns on a
// sound server, and on PostgreSQL (the one engine where it commits a
// transaction) a context that has ended is an error, never a success. The
// wait for synchronous standbys itself is exercised by the Patroni fault
// suite (internal/testkit/cluster, standbys lost in strict mode).
func TestWaitDurable(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) {
			ctx := context.Background()
			db, err := gormdb.Open(ctx, d.URL, gormdb.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.WaitDurable(ctx); err != nil {
				t.Fatalf("WaitDurable: %v", err)
			}
			if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "durable-1", Name: "x", PriceCents: 1, Stock: 1}); err != nil {
				t.Fatal(err)
			}
			done, cancel := context.WithCancel(ctx)
			cancel()
			if err := db.WaitDurable(done); (err == nil) == (db.Engine() == gormdb.Postgres) {
				t.Fatalf("WaitDurable with an ended context on %s: %v", db.Engine(), err)
			}
		})
	}
}
