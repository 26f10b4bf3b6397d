package gormdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestIdleTxTimeoutFreesRows freezes a transaction that holds a product row
// (it waits inside the transaction, as a frozen orderd's would): the database
// (PostgreSQL, MariaDB) ends its session after IdleTxTimeout, another store
// then locks the row, and the frozen transaction's write fails and commits
// nothing. On PostgreSQL it runs twice: with the Tx's one-statement
// primitives, and with flashorder.BatchTx's pipelines, whose write goes out
// with the COMMIT.
func TestIdleTxTimeoutFreesRows(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		if d.Engine == gormdb.SQLite {
			continue // one connection, one process: no other store to stop
		}
		t.Run(d.Engine, func(t *testing.T) { testIdleTxTimeout(t, d.URL, false) })
		if d.Engine == gormdb.Postgres {
			t.Run(d.Engine+"-pipelined", func(t *testing.T) { testIdleTxTimeout(t, d.URL, true) })
		}
	}
}

func testIdleTxTimeout(t *testing.T, url string, pipelined bool) {
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
			if pipelined {
				bt := tx.(flashorder.BatchTx)
				if _, _, err := bt.ProductsAndQuotas(ctx, []string{"idle-1"}, nil, true); err != nil {
					return err
				}
				close(locked)
				<-release
				return bt.TakeStocksAndCommit(ctx, map[string]int64{"idle-1": 3}, nil)
			}
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
	if err := lockAndTake(tctx, other, "idle-1", 1); err != nil {
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
	// The frozen store's dead connection is not reused: its next
	// transaction commits.
	if err := lockAndTake(ctx, frozen, "idle-1", 2); err != nil {
		t.Fatalf("the frozen store's next transaction: %v", err)
	}
	if p, err := other.Product(ctx, "idle-1"); err != nil || p.Stock != 7 {
		t.Fatalf("after the frozen store's next transaction: %+v %v, want stock 7", p, err)
	}
}

// lockAndTake takes n units of sku in a transaction of db of its own.
func lockAndTake(ctx context.Context, db *gormdb.DB, sku string, n int64) error {
	return db.InTx(ctx, func(tx flashorder.Tx) error {
		if _, err := tx.LockProducts(ctx, []string{sku}); err != nil {
			return err
		}
		return tx.TakeStocks(ctx, map[string]int64{sku: n})
	})
}

// TestLockTimeoutRetries holds a product row in one store's transaction while
// another store with LockTimeout locks it: every attempt of the waiter gives
// up after LockTimeout and InTx runs it again (each attempt reaches the lock)
// until the waiter's context ends; its error is then unavailable. Once the
// holder commits, the waiter's next transaction succeeds.
func TestLockTimeoutRetries(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		if d.Engine == gormdb.SQLite {
			continue // one connection: no lock wait between stores
		}
		t.Run(d.Engine, func(t *testing.T) { testLockTimeout(t, d.URL, d.Engine) })
	}
}

func testLockTimeout(t *testing.T, url, engine string) {
	ctx := context.Background()
	lockTimeout := 300 * time.Millisecond
	if engine == gormdb.MySQL {
		lockTimeout = time.Second // whole seconds
	}
	holder, err := gormdb.Open(ctx, url, gormdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	waiter, err := gormdb.Open(ctx, url, gormdb.Options{LockTimeout: lockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	if _, err := holder.PutProduct(ctx, flashorder.Product{SKU: "lockwait-1", Name: "x", PriceCents: 1, Stock: 10}); err != nil {
		t.Fatal(err)
	}

	locked, release := make(chan struct{}), make(chan struct{})
	holderErr := make(chan error, 1)
	go func() {
		holderErr <- holder.InTx(ctx, func(tx flashorder.Tx) error {
			if _, err := tx.LockProducts(ctx, []string{"lockwait-1"}); err != nil {
				return err
			}
			close(locked)
			<-release
			return tx.TakeStocks(ctx, map[string]int64{"lockwait-1": 1})
		})
	}()
	<-locked
	wait := 3*lockTimeout + lockTimeout/2
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	attempts := 0
	start := time.Now()
	err = waiter.InTx(wctx, func(tx flashorder.Tx) error {
		attempts++
		if _, err := tx.LockProducts(wctx, []string{"lockwait-1"}); err != nil {
			return err
		}
		return tx.TakeStocks(wctx, map[string]int64{"lockwait-1": 1})
	})
	took := time.Since(start)
	if flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE {
		t.Fatalf("waiting on a held row: %v, want unavailable", err)
	}
	if attempts < 3 {
		t.Errorf("the waiter's transaction ran %d times in %s, want it retried after each lock timeout of %s", attempts, wait, lockTimeout)
	}
	if took < wait || took > wait+10*time.Second {
		t.Errorf("the waiter gave up after %s, want when its context ended (%s)", took, wait)
	}
	close(release)
	if err := <-holderErr; err != nil {
		t.Fatalf("holder: %v", err)
	}
	if err := waiter.InTx(ctx, func(tx flashorder.Tx) error {
		if _, err := tx.LockProducts(ctx, []string{"lockwait-1"}); err != nil {
			return err
		}
		return tx.TakeStocks(ctx, map[string]int64{"lockwait-1": 1})
	}); err != nil {
		t.Fatalf("after the holder committed: %v", err)
	}
	p, err := waiter.Product(ctx, "lockwait-1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Stock != 8 {
		t.Fatalf("stock %d, want 8: one unit for the holder, one for the waiter's last transaction", p.Stock)
	}
}

// TestOpenTogetherWithLockTimeout opens several stores at once on a fresh
// database with a lock timeout far shorter than a migration: the ones that
// wait for another's migration lock must wait, not fail.
func TestOpenTogetherWithLockTimeout(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		if d.Engine == gormdb.SQLite {
			continue
		}
		t.Run(d.Engine, func(t *testing.T) {
			const n = 4
			errs := make(chan error, n)
			for range n {
				go func() {
					db, err := gormdb.Open(context.Background(), d.URL, gormdb.Options{LockTimeout: time.Millisecond})
					if err == nil {
						db.Close()
					}
					errs <- err
				}()
			}
			for range n {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}
