package checkout_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/locktest"
	"github.com/flashorder/flashorder/zookeeper"
)

func request(user, sku string, qty int64) *flashorder.PlaceOrderRequest {
	return &flashorder.PlaceOrderRequest{OrderRequest: flashorder.OrderRequest{UserID: user,
		Items: []flashorder.ItemRequest{{SKU: sku, Quantity: qty}}}}
}

// TestFence checks the store's fence on every database: newer and equal
// tokens pass, older ones and unknown SKUs do not, and a rolled-back fence
// leaves no trace.
func TestFence(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) {
			t.Parallel()
			db := placertest.Open(t, d.URL)
			putProduct(t, db, "f-1", 10, 0)
			ctx := context.Background()
			fence := func(sku string, token int64, commit bool) bool {
				t.Helper()
				var got bool
				rollback := errors.New("rollback")
				err := db.InTx(ctx, func(tx flashorder.Tx) error {
					var err error
					got, err = tx.Fence(ctx, sku, token)
					if err == nil && !commit {
						return rollback
					}
					return err
				})
				if err != nil && !errors.Is(err, rollback) {
					t.Fatalf("fence %s %d: %v", sku, token, err)
				}
				return got
			}
			steps := []struct {
				sku    string
				token  int64
				commit bool
				want   bool
			}{
				{"f-1", 5, true, true},
				{"f-1", 5, true, true}, // the same holder again
				{"f-1", 4, true, false},
				{"f-1", 1 << 40, false, true}, // rolled back...
				{"f-1", 6, true, true},        // ...so 6 still passes
				{"f-1", 5, true, false},
				{"no-such", 7, true, false},
			}
			for i, s := range steps {
				if got := fence(s.sku, s.token, s.commit); got != s.want {
					t.Fatalf("step %d: fence %s with %d = %v, want %v", i, s.sku, s.token, got, s.want)
				}
			}
		})
	}
}

// pausingLocker hands out real locks late: after acquiring, it reports the
// lock and waits for resume, as a process stopped by a long GC pause or by
// SIGSTOP right after it got its lock.
type pausingLocker struct {
	flashorder.Locker
	acquired chan flashorder.Lock
	resume   chan struct{}
}

func (p *pausingLocker) Lock(ctx context.Context, key string) (flashorder.Lock, error) {
	lk, err := p.Locker.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	p.acquired <- lk
	<-p.resume
	return lk, nil
}

// TestPausedHolderIsFenced: holder A takes the ZooKeeper lock of a SKU and
// pauses; its session expires (A is cut off from ZooKeeper); B takes the lock
// with a newer token and sells; A wakes up and runs its transaction with the
// old token. The fence refuses it: A gets 503 unavailable, and nothing of
// A's order is in the database.
func TestPausedHolderIsFenced(t *testing.T) {
	addrs := testenv.ZooKeeperAddrs(t)
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) {
			t.Parallel()
			db := placertest.Open(t, d.URL)
			putProduct(t, db, "fenced-1", 10, 0)
			ctx := context.Background()
			root := "/flashorder-test/" + locktest.Key("fence")
			proxy := locktest.NewProxy(t, addrs[0])
			newLocker := func(addrs []string) *zookeeper.Locker {
				l, err := zookeeper.NewLocker(ctx, addrs, zookeeper.LockerOptions{Prefix: root, SessionTimeout: 2 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				return l
			}
			a := &pausingLocker{Locker: newLocker([]string{proxy.Addr()}), acquired: make(chan flashorder.Lock, 1), resume: make(chan struct{})}
			b := newLocker(addrs)

			aErr := make(chan error, 1)
			var fencedSKU string // written before aErr is sent
			go func() {
				l := checkout.NewLockStrategy(db, a, checkout.LockStrategyOptions{OnFenced: func(sku string) { fencedSKU = sku }})
				_, err := l.PlaceOrder(ctx, request("user-a", "fenced-1", 1))
				aErr <- err
			}()
			aLock := <-a.acquired
			proxy.Cut() // A is paused and, to ZooKeeper, dead
			select {
			case <-aLock.Lost():
			case <-time.After(20 * time.Second):
				t.Fatal("A's lock was not lost after its session expired")
			}
			o, err := checkout.NewLockStrategy(db, b, checkout.LockStrategyOptions{}).PlaceOrder(ctx, request("user-b", "fenced-1", 2))
			if err != nil {
				t.Fatalf("B's order: %v", err)
			}
			close(a.resume) // A wakes up, still believing it holds the lock
			err = <-aErr
			if code := flashorder.ErrorCode(err); code != flashorder.EUNAVAILABLE {
				t.Fatalf("A's order after its lock went to B: %v (code %q), want unavailable", err, code)
			}
			if fencedSKU != "fenced-1" {
				t.Errorf("OnFenced saw %q, want fenced-1", fencedSKU)
			}
			p, err := db.Product(ctx, "fenced-1")
			if err != nil {
				t.Fatal(err)
			}
			if p.Stock != 8 || p.Sold != 2 {
				t.Fatalf("stock %d sold %d, want 8 and 2 (B's order only)", p.Stock, p.Sold)
			}
			page, err := db.Orders(ctx, flashorder.OrderFilter{UserID: "user-a", Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Orders) != 0 {
				t.Fatalf("A's refused order is in the database: %+v", page.Orders[0])
			}
			if got, err := db.Order(ctx, o.ID); err != nil || got.UserID != "user-b" {
				t.Fatalf("B's order reads back as %+v, %v", got, err)
			}
			audit, err := db.Audit(ctx)
			if err != nil || !audit.OK {
				t.Fatalf("audit: %+v %v", audit, err)
			}
		})
	}
}
