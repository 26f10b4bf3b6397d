package checkout

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/flashorder/flashorder"
)

// DefaultProductCacheTTL is how long ProductCache keeps a product: what a
// product page (and a refusal judged from it) may lag behind the database
// when no change announcement arrives.
const DefaultProductCacheTTL = time.Second

// DefaultLookupGrace is how long past its TTL Lookup still serves a product
// while a background read refreshes it (see ProductCache.LookupGrace).
const DefaultLookupGrace = 30 * time.Second

// ProductCache keeps products read from a Store for TTL, so that a crowd
// reloading the product page, and orders refused before a sale starts, cost
// no database round trip: one read per SKU, instance and TTL, shared by the
// requests that miss at once (singleflight). A SKU without a product is
// remembered too (a crowd of 404s costs no more). Stock this instance
// changed (Touch) is read again by the next Product; stock changed by other
// instances shows within TTL.
//
// Products returned are shared between callers: read them, never change
// them.
//
// A product changed through the Store returned by Store is forgotten at once
// here, and, when Changes is set, announced to the other instances, which
// forget it when the announcement arrives (Listen). Without Changes, or when
// an announcement is lost, a change is seen within TTL.
type ProductCache struct {
	store flashorder.Store

	// TTL is how long a product is kept; the default is
	// DefaultProductCacheTTL.
	TTL time.Duration
	// LookupGrace is how long past TTL Lookup still serves a product
	// while a background read refreshes it, so that orders checking a
	// SKU's admission never queue behind that read when the database is
	// slow to answer it (a pool held by the row strategy's transactions
	// may take seconds); past it Lookup reads the product itself. Product
	// and WindowRefusal never serve an expired product. The default is
	// DefaultLookupGrace; a negative value turns the grace off.
	LookupGrace time.Duration
	// Changes, when set, announces product changes between instances.
	Changes flashorder.ProductChanges
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock
	// OnForget, when set, is called with every SKU forgotten, whether the
	// change was made here or announced by another instance.
	OnForget func(sku string)

	entries sync.Map // SKU -> *cachedProduct
	loads   singleflight.Group
	// touches counts the Touches of each SKU (SKU -> *atomic.Uint64): a
	// read that a Touch overtook may hold the stock from before the
	// change, so what it keeps stays stale.
	touches sync.Map
	// epoch grows with every Forget: a read that started before one is
	// not kept.
	epoch atomic.Uint64

	// due holds the entries whose background refresh waits for the
	// refresher (a store that reads many products at once): SKU -> entry.
	// refresher is true while its goroutine runs.
	dueMu     sync.Mutex
	due       map[string]*cachedProduct
	refresher bool
	// readsMany counts the refresher's reads, each counted once what it
	// read is kept.
	readsMany atomic.Uint64
}

type cachedProduct struct {
	p       *flashorder.Product
	err     error // ENOTFOUND, when p is nil
	expires int64 // unix nanoseconds
	// refreshAt is half-way to expires: the first read past it reads the
	// product again in the background, so that a crowd's reads never wait
	// for the database while the SKU stays in demand.
	refreshAt  int64
	refreshing atomic.Bool
	// notStarted and ended are p's window refusals, made once: a crowd
	// refused before the start or after the end shares them.
	notStarted, ended error
	// stale is set when this instance changed the product's stock (an
	// order, a cancel): Product reads it again, Lookup still serves it.
	stale atomic.Bool
}

// NewProductCache returns a cache of store's products.
func NewProductCache(store flashorder.Store) *ProductCache {
	return &ProductCache{store: store, TTL: DefaultProductCacheTTL, LookupGrace: DefaultLookupGrace, Now: time.Now}
}

// Product returns sku's product as read at most TTL ago and after this
// instance last changed its stock (Touch), or ENOTFOUND, or the error of the
// read: what the product page shows.
func (c *ProductCache) Product(ctx context.Context, sku string) (*flashorder.Product, error) {
	return c.get(ctx, sku, false, 0)
}

// Lookup is Product for a caller that needs no current stock (the sale
// window, the price, the limit, the admission): a product whose stock this
// instance changed is still served from memory, and so is one past its TTL
// for LookupGrace while a background read refreshes it.
func (c *ProductCache) Lookup(ctx context.Context, sku string) (*flashorder.Product, error) {
	return c.get(ctx, sku, true, max(c.LookupGrace, 0))
}

// Touch tells the cache that this instance changed sku's stock: the next
// Product reads it again (one read for all who ask at once).
func (c *ProductCache) Touch(sku string) {
	c.touchCount(sku).Add(1)
	if v, ok := c.entries.Load(sku); ok {
		v.(*cachedProduct).stale.Store(true)
	}
}

// touchCount returns sku's Touch counter.
func (c *ProductCache) touchCount(sku string) *atomic.Uint64 {
	if v, ok := c.touches.Load(sku); ok {
		return v.(*atomic.Uint64)
	}
	v, _ := c.touches.LoadOrStore(sku, new(atomic.Uint64))
	return v.(*atomic.Uint64)
}

// WindowRefusal returns sku's answer to an order at now as far as its sale
// window goes (nil while it is open; the refusal is made once per product
// read, not per order), with ok false when sku is unknown or unreadable. It
// reads like Lookup, but never waits for a read of a SKU it has cached:
// past the TTL it answers ok false while a background read refreshes it.
func (c *ProductCache) WindowRefusal(ctx context.Context, sku string, now time.Time) (refusal error, ok bool) {
	e := c.fresh(sku, true, 0)
	if e == nil {
		if c.refreshExpired(sku) {
			return nil, false // the strategy decides until the refresh lands
		}
		if _, err := c.load(ctx, sku); err != nil {
			return nil, false
		}
		if e = c.fresh(sku, true, 0); e == nil {
			return nil, false // forgotten meanwhile: the strategy decides
		}
	}
	if e.p == nil {
		return nil, false
	}
	switch e.p.WindowAt(now) {
	case flashorder.WindowBefore:
		return e.notStarted, true
	case flashorder.WindowAfter:
		return e.ended, true
	}
	return nil, true
}

func (c *ProductCache) get(ctx context.Context, sku string, staleOK bool, grace time.Duration) (*flashorder.Product, error) {
	if e := c.fresh(sku, staleOK, grace); e != nil {
		return e.p, e.err
	}
	return c.load(ctx, sku)
}

// fresh returns sku's entry while it may be served (see Product and
// Lookup: staleOK serves it after this instance's Touch, grace past its
// TTL), starting a background refresh past refreshAt; nil when the store
// must be read.
func (c *ProductCache) fresh(sku string, staleOK bool, grace time.Duration) *cachedProduct {
	v, ok := c.entries.Load(sku)
	if !ok {
		return nil
	}
	e := v.(*cachedProduct)
	now := c.Now().UnixNano()
	if now >= e.expires+int64(grace) || !staleOK && e.stale.Load() {
		return nil
	}
	if now >= e.refreshAt {
		c.refresh(sku, e)
	}
	return e
}

// refresh reads sku again in the background for its entry e, unless a read
// for e is under way; after a failure the next reader tries again. A store
// that reads many products at once (flashorder.ProductsReader) gets the SKUs
// due within refreshGather in one read: a catalogue's SKUs, refreshed every
// TTL/2 each, would otherwise cost a read apiece.
func (c *ProductCache) refresh(sku string, e *cachedProduct) {
	if !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	reader, ok := c.store.(flashorder.ProductsReader)
	if !ok {
		go func() {
			if _, err := c.load(context.Background(), sku); err != nil {
				e.refreshing.Store(false)
			}
		}()
		return
	}
	c.dueMu.Lock()
	if c.due == nil {
		c.due = make(map[string]*cachedProduct)
	}
	if old, ok := c.due[sku]; ok && old != e {
		old.refreshing.Store(false) // replaced: its next reader may ask again
	}
	c.due[sku] = e
	start := !c.refresher
	c.refresher = true
	c.dueMu.Unlock()
	if start {
		go c.refreshDue(reader)
	}
}

// refreshGather is how long the refresher waits for more SKUs to come due
// before it reads (a quarter of the TTL when that is shorter): SKUs read
// together come due together after, and a SKU ordered only every few tens of
// milliseconds (a catalogue's tail) still joins the read of the others.
const refreshGather = 100 * time.Millisecond

// refreshReadMax bounds the SKUs of one read (a statement's parameters).
const refreshReadMax = 500

// refreshDue reads the due entries' SKUs, refreshGather after the first came
// due and refreshReadMax at a time (the rest at once after), until none is
// due.
func (c *ProductCache) refreshDue(reader flashorder.ProductsReader) {
	for more := false; ; {
		if !more {
			time.Sleep(min(refreshGather, c.TTL/4))
		}
		c.dueMu.Lock()
		if len(c.due) == 0 {
			c.refresher = false
			c.dueMu.Unlock()
			return
		}
		due := make(map[string]*cachedProduct, min(len(c.due), refreshReadMax))
		for sku, e := range c.due {
			if len(due) == refreshReadMax {
				break
			}
			due[sku] = e
			delete(c.due, sku)
		}
		more = len(c.due) > 0
		c.dueMu.Unlock()
		c.readMany(reader, due)
		c.readsMany.Add(1)
	}
}

// readMany reads the SKUs of due with one read (a SKU the read leaves out is
// not found). Each SKU's entry is replaced only if it is still the one that
// came due: a Forget of that SKU during the read (or a newer read kept
// meanwhile) leaves it out, and no other SKU. After a failure each entry's
// next reader tries again.
func (c *ProductCache) readMany(reader flashorder.ProductsReader, due map[string]*cachedProduct) {
	skus := make([]string, 0, len(due))
	counts := make([]*atomic.Uint64, 0, len(due))
	began := make([]uint64, 0, len(due))
	for sku := range due {
		touched := c.touchCount(sku)
		skus, counts, began = append(skus, sku), append(counts, touched), append(began, touched.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	defer cancel()
	ps, err := reader.Products(ctx, skus)
	if err != nil {
		for _, e := range due {
			e.refreshing.Store(false)
		}
		return
	}
	bySKU := make(map[string]*flashorder.Product, len(ps))
	for _, p := range ps {
		bySKU[p.SKU] = p
	}
	for i, sku := range skus {
		p := bySKU[sku]
		var notFound error
		if p == nil {
			notFound = flashorder.ProductNotFound(sku)
		}
		e := c.entry(p, notFound)
		if counts[i].Load() != began[i] {
			e.stale.Store(true) // a Touch overtook the read
		}
		if old := due[sku]; !c.entries.CompareAndSwap(sku, old, e) {
			old.refreshing.Store(false)
		}
	}
}

// refreshExpired reports whether sku has an entry past its TTL, and makes
// sure a background read of it is under way: an order's window check does
// not wait behind that read (a database busy with the strategy's
// transactions may take seconds to answer it), the strategy checks the
// window itself meanwhile.
func (c *ProductCache) refreshExpired(sku string) bool {
	v, ok := c.entries.Load(sku)
	if !ok {
		return false
	}
	c.refresh(sku, v.(*cachedProduct))
	return true
}

// refreshTimeout bounds a background refresh.
const refreshTimeout = 5 * time.Second

// load reads sku from the store, once for all concurrent callers, and keeps
// what it read unless a Forget ran meanwhile (stale when a Touch overtook
// the read). A caller that touched sku after the read it joined began reads
// again: that read may predate the caller's own change.
func (c *ProductCache) load(ctx context.Context, sku string) (*flashorder.Product, error) {
	touched := c.touchCount(sku)
	seen := touched.Load()
	for {
		v, err, _ := c.loads.Do(sku, func() (any, error) {
			epoch, began := c.epoch.Load(), touched.Load()
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
			defer cancel()
			p, err := c.store.Product(ctx, sku)
			if err != nil && flashorder.ErrorCode(err) != flashorder.ENOTFOUND {
				return nil, err // a failure: not kept
			}
			if e := c.keep(sku, p, err, epoch); e != nil && touched.Load() != began {
				e.stale.Store(true) // a Touch overtook the read
			}
			return &loaded{p: p, err: err, began: began}, nil
		})
		if err != nil {
			return nil, err
		}
		l := v.(*loaded)
		if l.began >= seen {
			return l.p, l.err
		}
	}
}

// loaded is one read of load: the product (or ENOTFOUND), and the Touch
// count when the read began.
type loaded struct {
	p     *flashorder.Product
	err   error
	began uint64
}

// Put keeps p, read from the database after epoch was taken (Epoch), as
// sku's product, unless a Forget ran since.
func (c *ProductCache) Put(p *flashorder.Product, epoch uint64) {
	c.keep(p.SKU, p, nil, epoch)
}

// Epoch returns the cache's change count, for Put.
func (c *ProductCache) Epoch() uint64 { return c.epoch.Load() }

func (c *ProductCache) keep(sku string, p *flashorder.Product, err error, epoch uint64) *cachedProduct {
	e := c.entry(p, err)
	c.entries.Store(sku, e)
	// Store, then check: a Forget that ran meanwhile either deleted this
	// entry or moved the epoch on, and then it goes here.
	if c.epoch.Load() != epoch {
		c.entries.CompareAndDelete(sku, e)
		return nil
	}
	return e
}

// entry returns a new entry for p (or err), read now.
func (c *ProductCache) entry(p *flashorder.Product, err error) *cachedProduct {
	now := c.Now().UnixNano()
	e := &cachedProduct{p: p, err: err, expires: now + int64(c.TTL), refreshAt: now + int64(c.TTL)/2}
	if p != nil && p.StartsAt != nil {
		e.notStarted = p.CheckWindow(p.StartsAt.Add(-time.Nanosecond))
	}
	if p != nil && p.EndsAt != nil {
		e.ended = p.CheckWindow(*p.EndsAt)
	}
	return e
}

// Forget drops sku here (not in other instances: see Store).
func (c *ProductCache) Forget(sku string) {
	c.epoch.Add(1)
	c.entries.Delete(sku)
	c.loads.Forget(sku)
	if c.OnForget != nil {
		c.OnForget(sku)
	}
}

// Listen forgets every SKU that another instance announces through Changes,
// until ctx ends. Without Changes it does nothing.
func (c *ProductCache) Listen(ctx context.Context) error {
	if c.Changes == nil {
		return nil
	}
	return c.Changes.Subscribe(ctx, c.Forget)
}

// Store returns the cache's store with PutProduct also forgetting the
// product, here and, through Changes, in every instance. Hand it to whatever
// changes products (the HTTP server).
func (c *ProductCache) Store() flashorder.Store { return &forgettingStore{Store: c.store, cache: c} }

type forgettingStore struct {
	flashorder.Store
	cache *ProductCache
}

// PutProduct forgets the product whether or not the update committed: after
// an error the outcome is unknown, and a missing entry is always safe. An
// announcement that fails is left to the TTL.
func (s *forgettingStore) PutProduct(ctx context.Context, p flashorder.Product) (*flashorder.Product, error) {
	stored, err := s.Store.PutProduct(ctx, p)
	s.cache.Forget(p.SKU)
	if s.cache.Changes != nil {
		_ = s.cache.Changes.Publish(context.WithoutCancel(ctx), p.SKU)
	}
	return stored, err
}
