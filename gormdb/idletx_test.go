package gormdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testenv"
)

// TestIdleTxTimeoutFreesRows freezes a transaction that holds a product row
// (it waits inside the transaction, as a frozen orderd's would): the database
// (PostgreSQL, MariaDB) ends its session after IdleTxTimeout, another store
// then locks the row, and the frozen transaction's write fails and commits
// nothing.
func TestIdleTxTimeoutFreesRows(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		if d.Engine == gormdb.SQLite {
			continue // one connection, one process: no other store to stop
		}
		t.Run(d.Engine, func(t *testing.T) { testIdleTxTimeout(t, d.URL) })
	}
}

func testIdleTxTimeout(t *testing.T, url string) {
	ctx := context.Background()
	const idle = 500 * time.Millisecond // MariaDB rounds it up to 1s
	frozen, err := gormdb.Open(ctx, url, gormdb.Options{IdleTxTimeout: idle})
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Close()
	other, err := gormdb.Open(ctx, url, gormdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.PutProduct(ctx, flashorder.Product{SKU: "idle-1", Name: "x", PriceCents: 1, Stock: 10}); err != nil {
		t.Fatal(err)
	}

	locked, release := make(chan struct{}), make(chan struct{})
	frozenErr := make(chan error, 1)
	go func() {
		frozenErr <- frozen.InTx(ctx, func(tx flashorder.Tx) error {
			if _, err := tx.LockProducts(ctx, []string{"idle-1"}); err != nil {
				return err
			}
			close(locked)
			<-release // frozen, holding the row, idle in its transaction
			return tx.TakeStocks(ctx, map[string]int64{"idle-1": 3})
		})
	}()
	<-locked
	// Without the timeout this would wait for release, which comes only
	// after it: the test would time out.
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := other.InTx(tctx, func(tx flashorder.Tx) error {
		if _, err := tx.LockProducts(tctx, []string{"idle-1"}); err != nil {
			return err
		}
		return tx.TakeStocks(tctx, map[string]int64{"idle-1": 1})
	}); err != nil {
		t.Fatalf("another store's transaction while one is frozen on the row: %v", err)
	}
	close(release)
	if err := <-frozenErr; flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE {
		t.Fatalf("the frozen transaction after its session ended: %v, want unavailable", err)
	}
	p, err := other.Product(ctx, "idle-1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Stock != 9 {
		t.Fatalf("stock %d, want 9: only the other store's unit taken", p.Stock)
	}
}
