package checkout_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// gatedStore holds every product read, once it read the database, until
// release is closed (when started is set).
type gatedStore struct {
	countingStore
	release chan struct{}
	started chan struct{}
}

func (s *gatedStore) Product(ctx context.Context, sku string) (*flashorder.Product, error) {
	p, err := s.countingStore.Product(ctx, sku)
	if s.started != nil {
		s.started <- struct{}{}
		<-s.release
	}
	return p, err
}

// clockedCache returns a cache of store with a TTL of 10 s on a clock that
// the test moves (unix nanoseconds).
func clockedCache(store flashorder.Store) (*checkout.ProductCache, *atomic.Int64) {
	cache := checkout.NewProductCache(store)
	nowNs := new(atomic.Int64)
	nowNs.Store(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	cache.Now = func() time.Time { return time.Unix(0, nowNs.Load()) }
	cache.TTL = 10 * time.Second
	return cache, nowNs
}

// TestProductCache checks the product cache's reads: one read for a crowd
// of misses, a missing product remembered, Touch read again by Product but
// not by Lookup, a background refresh past half the TTL, a read past the
// TTL, and a read that a Forget overtook not kept.
func TestProductCache(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	put(t, db, "p", 5, 0)
	store := &gatedStore{countingStore: countingStore{Store: db}}
	cache, nowNs := clockedCache(store)
	ctx := context.Background()

	store.started, store.release = make(chan struct{}, 200), make(chan struct{})
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p, err := cache.Product(ctx, "p"); err != nil || p.Stock != 5 {
				t.Errorf("crowd read: %+v %v", p, err)
			}
		}()
	}
	<-store.started
	time.Sleep(50 * time.Millisecond) // the others join the read in flight
	close(store.release)
	wg.Wait()
	store.started = nil
	if n := store.products.Load(); n != 1 {
		t.Fatalf("%d reads for 100 concurrent misses, want 1", n)
	}
	for range 2 {
		if _, err := cache.Product(ctx, "nope"); flashorder.ErrorCode(err) != flashorder.ENOTFOUND {
			t.Fatalf("missing product: %v", err)
		}
	}
	if n := store.products.Load(); n != 2 {
		t.Fatalf("%d reads after two reads of a missing product, want 2", n)
	}

	put(t, db, "p", 4, 0) // behind the cache's back, as an order of this instance
	cache.Touch("p")
	if p, _ := cache.Lookup(ctx, "p"); p.Stock != 5 {
		t.Fatalf("Lookup after Touch read again: stock %d", p.Stock)
	}
	if p, _ := cache.Product(ctx, "p"); p.Stock != 4 {
		t.Fatalf("Product after Touch: stock %d, want 4", p.Stock)
	}

	put(t, db, "p", 3, 0)
	nowNs.Add(int64(6 * time.Second)) // past half the TTL: served, refreshed behind
	if p, _ := cache.Product(ctx, "p"); p.Stock != 4 {
		t.Fatalf("past half the TTL: stock %d, want the kept 4", p.Stock)
	}
	testenv.WaitFor(t, "the background refresh", 5*time.Second, func() bool {
		p, _ := cache.Product(ctx, "p")
		return p.Stock == 3
	})
	put(t, db, "p", 2, 0)
	nowNs.Add(int64(11 * time.Second)) // past the TTL: read before answering
	if p, _ := cache.Product(ctx, "p"); p.Stock != 2 {
		t.Fatalf("past the TTL: stock %d, want 2", p.Stock)
	}

	// A read in flight when the product changes (it read the old stock) is
	// not kept.
	store.started, store.release = make(chan struct{}, 1), make(chan struct{})
	nowNs.Add(int64(11 * time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = cache.Product(ctx, "p")
	}()
	<-store.started
	put(t, db, "p", 1, 0)
	cache.Forget("p")
	close(store.release)
	<-done
	store.started = nil
	if p, _ := cache.Product(ctx, "p"); p.Stock != 1 {
		t.Fatalf("after a Forget that overtook a read: stock %d, want 1", p.Stock)
	}
}

// TestProductCacheTouchOvertakesRead forces a Touch (this instance's order)
// between a read's start and its end: the read holds the stock from before
// the order. What it keeps is stale for Product, and a caller that touched
// and then joined that read reads again: neither sees the old stock.
func TestProductCacheTouchOvertakesRead(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	put(t, db, "t", 5, 0)
	store := &gatedStore{countingStore: countingStore{Store: db}}
	cache := checkout.NewProductCache(store)
	cache.TTL = time.Hour
	ctx := context.Background()

	store.started, store.release = make(chan struct{}, 2), make(chan struct{})
	first := make(chan *flashorder.Product, 1)
	go func() { p, _ := cache.Product(ctx, "t"); first <- p }()
	<-store.started // the read has the stock before the order: 5
	// The order: the stock changes in the database, then the instance
	// touches the product and asks for it, joining the read in flight.
	if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "t", Name: "t", PriceCents: 100, Stock: 4}); err != nil {
		t.Fatal(err)
	}
	cache.Touch("t")
	second := make(chan *flashorder.Product, 1)
	go func() { p, _ := cache.Product(ctx, "t"); second <- p }()
	time.Sleep(50 * time.Millisecond) // it joins the read in flight
	close(store.release)
	if p := <-first; p.Stock != 5 {
		t.Fatalf("the read that began before the order: stock %d, want 5", p.Stock)
	}
	if p := <-second; p.Stock != 4 {
		t.Fatalf("a caller that touched, then joined the older read: stock %d, want 4", p.Stock)
	}
	store.started = nil
	if p, _ := cache.Product(ctx, "t"); p.Stock != 4 {
		t.Fatalf("after the overtaken read: stock %d, want 4", p.Stock)
	}
}

// failingOnceStore fails its next product read while fail is set.
type failingOnceStore struct {
	gatedStore
	fail atomic.Bool
}

func (s *failingOnceStore) Product(ctx context.Context, sku string) (*flashorder.Product, error) {
	if s.fail.CompareAndSwap(true, false) {
		s.products.Add(1)
		return nil, flashorder.Errorf(flashorder.EUNAVAILABLE, "database busy")
	}
	return s.gatedStore.Product(ctx, sku)
}

// crowdDuringRefresh holds store's reads, moves the clock past the TTL
// (pastTTL), and checks that 50 calls of check (a what) all pass without
// waiting for the database, while one read, the background refresh, starts;
// then it lets the refresh through. The cache must hold sku's entry, read
// once from store.
func crowdDuringRefresh(t *testing.T, store *gatedStore, what string, pastTTL func(), check func() error) {
	t.Helper()
	store.started, store.release = make(chan struct{}, 10), make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(store.release)
		}
	}
	defer release() // a check that waits for the read must not hang the test
	pastTTL()
	checked := make(chan error, 1)
	go func() {
		for range 50 {
			if err := check(); err != nil {
				checked <- err
				return
			}
		}
		checked <- nil
	}()
	select {
	case err := <-checked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the %s waited for the database's read", what)
	}
	<-store.started
	if n := store.products.Load(); n != 2 {
		t.Fatalf("%d reads after 50 calls of the %s past the TTL, want 2 (the first and one refresh)", n, what)
	}
	release()
	store.started = nil
}

// TestProductCacheWindowRefusalPastTTL checks that an order's window check
// never waits for the database once the SKU is cached: past the TTL it
// answers "the strategy decides" at once while one background read (not one
// per order) refreshes the entry, and a refresh that failed is tried again.
func TestProductCacheWindowRefusalPastTTL(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	starts := now.Add(time.Hour)
	if _, err := db.PutProduct(context.Background(), flashorder.Product{SKU: "p", Name: "p", PriceCents: 100, Stock: 5, StartsAt: &starts}); err != nil {
		t.Fatal(err)
	}
	store := &failingOnceStore{gatedStore: gatedStore{countingStore: countingStore{Store: db}}}
	cache := checkout.NewProductCache(store)
	var nowNs atomic.Int64
	nowNs.Store(now.UnixNano())
	cache.Now = func() time.Time { return time.Unix(0, nowNs.Load()) }
	cache.TTL = 10 * time.Second
	ctx := context.Background()

	refused := func() bool {
		refusal, ok := cache.WindowRefusal(ctx, "p", now)
		return ok && flashorder.ErrorCode(refusal) == flashorder.ENOTSTARTED
	}
	if !refused() {
		t.Fatal("a cached product before its start: not refused")
	}

	// Past the TTL, with the database holding the read: no wait, no refusal
	// from the expired entry, one read for the crowd.
	crowdDuringRefresh(t, &store.gatedStore, "window check", func() { nowNs.Add(int64(11 * time.Second)) }, func() error {
		if refusal, ok := cache.WindowRefusal(ctx, "p", now); ok || refusal != nil {
			return fmt.Errorf("past the TTL during the read: %v, %v; want the strategy to decide", refusal, ok)
		}
		return nil
	})
	testenv.WaitFor(t, "the refreshed entry", 5*time.Second, refused)

	// A refresh that fails is tried again by the next check.
	store.fail.Store(true)
	nowNs.Add(int64(11 * time.Second))
	if refusal, ok := cache.WindowRefusal(ctx, "p", now); ok || refusal != nil {
		t.Fatalf("past the TTL: %v, %v; want the strategy to decide", refusal, ok)
	}
	testenv.WaitFor(t, "the failed refresh tried again", 5*time.Second, refused)
	if n := store.products.Load(); n < 4 {
		t.Fatalf("%d reads: the failed refresh was not tried again", n)
	}
}

// TestProductCacheLookupPastTTL checks that an order's admission lookup
// never waits for the database within the grace: past the TTL, with the
// database holding the read, Lookup serves the product it has at once while
// one background read (not one per order) refreshes it; past TTL and grace
// it reads the product itself and serves what the database holds.
func TestProductCacheLookupPastTTL(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	ctx := context.Background()
	putPrice := func(cents int64) {
		t.Helper()
		if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "p", Name: "p", PriceCents: cents, Stock: 5}); err != nil {
			t.Fatal(err)
		}
	}
	putPrice(100)
	store := &gatedStore{countingStore: countingStore{Store: db}}
	cache := checkout.NewProductCache(store)
	var nowNs atomic.Int64
	nowNs.Store(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).UnixNano())
	cache.Now = func() time.Time { return time.Unix(0, nowNs.Load()) }
	cache.TTL, cache.LookupGrace = 10*time.Second, time.Minute
	price := func() int64 {
		t.Helper()
		p, err := cache.Lookup(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		return p.PriceCents
	}
	if got := price(); got != 100 {
		t.Fatalf("price %d, want 100", got)
	}
	putPrice(200) // in the database only: the cache learns it by reading

	crowdDuringRefresh(t, store, "lookup", func() { nowNs.Add(int64(11 * time.Second)) }, func() error {
		if p, err := cache.Lookup(ctx, "p"); err != nil || p.PriceCents != 100 {
			return fmt.Errorf("past the TTL during the read: %v, %v; want the cached product", p, err)
		}
		return nil
	})
	testenv.WaitFor(t, "the refreshed entry", 5*time.Second, func() bool { return price() == 200 })

	// Past TTL and grace Lookup reads the database itself: what it answers
	// is the database's product, not the one it had.
	putPrice(300)
	nowNs.Add(int64(10*time.Second + time.Minute))
	if got := price(); got != 300 {
		t.Fatalf("past TTL and grace: price %d, want the database's 300", got)
	}

	// Product never serves an expired entry: the page shows the database.
	putPrice(400)
	nowNs.Add(int64(11 * time.Second))
	if p, err := cache.Product(ctx, "p"); err != nil || p.PriceCents != 400 {
		t.Fatalf("Product past the TTL: %v, %v; want the database's price 400", p, err)
	}
}

// manyStore reads many products at once (flashorder.ProductsReader),
// counting those reads; fail makes the next reads fail, and while gate is
// set each read, once it read the database, sends on started and waits for
// a value on release.
type manyStore struct {
	countingStore
	reader           flashorder.ProductsReader
	many, manySKUs   atomic.Int64
	fail             atomic.Int64
	hidden           atomic.Pointer[string] // a SKU the reads leave out
	gate             atomic.Bool
	started, release chan struct{}
}

func (s *manyStore) Products(ctx context.Context, skus []string) ([]*flashorder.Product, error) {
	s.many.Add(1)
	s.manySKUs.Add(int64(len(skus)))
	if s.fail.Add(-1) >= 0 {
		return nil, fmt.Errorf("injected failure")
	}
	ps, err := s.reader.Products(ctx, skus)
	if h := s.hidden.Load(); h != nil {
		ps = slices.DeleteFunc(ps, func(p *flashorder.Product) bool { return p.SKU == *h })
	}
	if s.gate.Load() {
		s.started <- struct{}{}
		<-s.release
	}
	return ps, err
}

// TestProductCacheRefreshesMany checks that a store reading many products at
// once gets a catalogue's background refreshes in one read: every SKU due
// together is read together, a SKU the read leaves out is remembered as
// missing (and found once it exists), a failed read is tried again by the
// next reader, and a read that a Forget overtook is not kept.
func TestProductCacheRefreshesMany(t *testing.T) {
	db := placertest.Open(t, testenv.SQLiteURL(t))
	const n = 50
	sku := func(i int) string { return fmt.Sprintf("c-%d", i) }
	for i := range n {
		put(t, db, sku(i), 10, 0)
	}
	store := &manyStore{countingStore: countingStore{Store: db}, reader: db, started: make(chan struct{}), release: make(chan struct{})}
	cache, nowNs := clockedCache(store)
	ctx := context.Background()
	lookAll := func(stock int64) (same int) {
		for i := range n {
			p, err := cache.Lookup(ctx, sku(i))
			if err != nil {
				t.Fatal(err)
			}
			if p.Stock == stock {
				same++
			}
		}
		if _, err := cache.Lookup(ctx, "absent"); flashorder.ErrorCode(err) != flashorder.ENOTFOUND && err != nil {
			t.Fatal(err)
		}
		return same
	}
	if lookAll(10) != n {
		t.Fatal("first reads")
	}
	if got := store.products.Load(); got != n+1 {
		t.Fatalf("%d single reads for %d first misses, want %d", got, n+1, n+1)
	}

	for i := range n {
		put(t, db, sku(i), 9, 0)
	}
	put(t, db, "absent", 3, 0)
	nowNs.Add(int64(6 * time.Second)) // past half the TTL: served, refreshed behind
	if lookAll(10) != n {
		t.Fatal("past half the TTL, the kept products are served")
	}
	testenv.WaitFor(t, "the background refresh", 5*time.Second, func() bool { return lookAll(9) == n })
	if m := store.many.Load(); m > 2 {
		t.Errorf("%d reads refreshed %d SKUs due together, want 1 (2 if a gather window split them)", m, n+1)
	}
	if got := store.products.Load(); got != n+1 {
		t.Errorf("%d single reads after the refresh, want still %d", got, n+1)
	}
	if p, err := cache.Lookup(ctx, "absent"); err != nil || p.Stock != 3 {
		t.Errorf("a product created after its miss was kept: %+v %v", p, err)
	}

	// A failed read: the entries stay, and the next reader tries again.
	store.fail.Store(1)
	before := store.many.Load()
	nowNs.Add(int64(6 * time.Second))
	for i := range n {
		put(t, db, sku(i), 8, 0)
	}
	lookAll(9)
	testenv.WaitFor(t, "the failed read", 5*time.Second, func() bool { return store.many.Load() > before })
	testenv.WaitFor(t, "a refresh after the failure", 5*time.Second, func() bool { return lookAll(8) == n })

	// A SKU the read leaves out is remembered as not found.
	hidden := "absent"
	store.hidden.Store(&hidden)
	nowNs.Add(int64(6 * time.Second))
	lookAll(8)
	testenv.WaitFor(t, "the left-out SKU not found", 5*time.Second, func() bool {
		_, err := cache.Lookup(ctx, "absent")
		return flashorder.ErrorCode(err) == flashorder.ENOTFOUND
	})
	store.hidden.Store(nil)

	// During a held read (of stock 7), sku 0 changes and is forgotten, and
	// sku 2 changes through this instance (Touch). The read is not kept for
	// sku 0, marks sku 2 stale (Product reads it again, Lookup serves it),
	// and is kept for every other SKU: no read of theirs after it.
	waitStarted := func() {
		t.Helper()
		select {
		case <-store.started:
		case <-time.After(10 * time.Second):
			t.Fatal("no read of many started")
		}
	}
	for i := range n {
		put(t, db, sku(i), 7, 0)
	}
	store.gate.Store(true)
	nowNs.Add(int64(6 * time.Second))
	lookAll(8)
	waitStarted()
	ended := checkout.RefreshReads(cache)
	put(t, db, sku(0), 1, 0)
	cache.Forget(sku(0))
	put(t, db, sku(2), 5, 0)
	cache.Touch(sku(2))
	store.gate.Store(false)
	store.release <- struct{}{}
	testenv.WaitFor(t, "the held read's end", 5*time.Second, func() bool { return checkout.RefreshReads(cache) > ended })
	singles := store.products.Load()
	for i := 3; i < n; i++ {
		if p, err := cache.Lookup(ctx, sku(i)); err != nil || p.Stock != 7 {
			t.Fatalf("%s after the held read: %+v %v, want stock 7", sku(i), p, err)
		}
	}
	if got := store.products.Load(); got != singles {
		t.Errorf("%d single reads of SKUs the held read kept, want 0 (a Forget of one SKU dropped the others)", got-singles)
	}
	if p, err := cache.Lookup(ctx, sku(0)); err != nil || p.Stock != 1 {
		t.Errorf("after a Forget that overtook a read of many: %+v %v, want stock 1", p, err)
	}
	if p, _ := cache.Lookup(ctx, sku(2)); p.Stock != 7 {
		t.Errorf("Lookup of a SKU touched during the read: stock %d, want the read's 7", p.Stock)
	}
	if p, _ := cache.Product(ctx, sku(2)); p.Stock != 5 {
		t.Errorf("Product of a SKU touched during the read: stock %d, want 5 (read again)", p.Stock)
	}
}
