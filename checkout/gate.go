package checkout

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashorder/flashorder"
)

var _ flashorder.OrderPlacer = (*Gate)(nil)

// Defaults of Gate.
const (
	// DefaultSoldOutTTL is how long a sold-out mark lasts without being
	// renewed from the database. It bounds how long stock that comes back
	// without a product update (a cancelled or expired order) stays unsold.
	DefaultSoldOutTTL = time.Second
	// DefaultSoldOutRecheck is how often a local mark is confirmed against
	// the shared cache, so that stock added through another instance is
	// seen within that time.
	DefaultSoldOutRecheck = 100 * time.Millisecond
	// DefaultMaxHolders bounds the users a sold-out mark remembers for a
	// product with a per-user limit; a product held by more is not marked
	// (its refusals go to the database).
	DefaultMaxHolders = 200_000
)

// Gate is a flashorder.OrderPlacer in front of any strategy that answers the
// refusals of a drop's crowd without a database round trip, with the answer
// the strategy would give:
//
//   - an order for a product whose sale window is not open (not_started,
//     with its start, or sale_ended), judged from the ProductCache;
//   - an order whose every item is marked sold out: limit_exceeded for a
//     user who holds a product's limit (the mark of a product with a
//     per-user limit remembers what each user holds), else sold_out.
//
// The API's check order stays exact: an order with a product the cache does
// not know goes to the strategy (unknown_product comes first); the window
// comes before the limit and the stock, as in every strategy.
//
// A SKU is marked when a single-item order for it was refused sold_out and
// the database then shows no stock: one read (and one of its holders) per
// SKU at a time, never one per refusal. A mark lasts TTL; past half of it
// the next hit renews it from the database in the background, so a crowd
// never waits for a renewal. Stock added through Store clears the mark at
// once here, through Shared (when set) in the others within Recheck, and
// through the ProductCache's Changes at once; stock that returns otherwise
// (a cancel, an expiry) is sold again within TTL.
type Gate struct {
	next     flashorder.OrderPlacer
	store    flashorder.Store
	products *ProductCache

	// Shared, when set, shares sold-out marks between instances; its
	// errors count as "not sold out", so the database decides.
	Shared flashorder.SoldOutCache
	// TTL is how long a sold-out mark lasts; the default is
	// DefaultSoldOutTTL. Zero or less: no marks.
	TTL time.Duration
	// Recheck is how often a mark is confirmed against Shared; the default
	// is DefaultSoldOutRecheck.
	Recheck time.Duration
	// MaxHolders bounds the users a mark remembers; the default is
	// DefaultMaxHolders.
	MaxHolders int
	// Now returns the current time; the default is time.Now. It must be
	// the strategy's clock.
	Now flashorder.Clock

	marks    sync.Map // SKU -> *soldOutMark
	learning sync.Map // SKU -> struct{}, while one request learns it
	// epoch grows with every forgotten SKU: a mark learnt across it is
	// dropped.
	epoch      atomic.Uint64
	windowHits atomic.Int64
	soldHits   atomic.Int64
}

type soldOutMark struct {
	expires int64        // unix nanoseconds
	renewAt int64        // unix nanoseconds: past it a hit renews the mark
	checked atomic.Int64 // unix nanoseconds of the last confirmation against Shared
	// limit is the product's per-user limit, and held what each user
	// holds of it (nil without a limit).
	limit int64
	held  map[string]int64
	// soldOut is the sold_out refusal of sku, made once for the crowd.
	soldOut error
}

// NewGate returns the gate around next; store is where next keeps products.
// Its ProductCache (Products) reads store.
func NewGate(next flashorder.OrderPlacer, store flashorder.Store) *Gate {
	g := &Gate{next: next, store: store, products: NewProductCache(store), TTL: DefaultSoldOutTTL,
		Recheck: DefaultSoldOutRecheck, MaxHolders: DefaultMaxHolders, Now: time.Now}
	g.products.OnForget = g.forgetMark
	return g
}

// Products returns the gate's product cache: the product page reads it, and
// its settings (TTL, Changes) are the gate's.
func (g *Gate) Products() *ProductCache { return g.products }

// Hits returns how many orders the gate refused without the database:
// outside their sale window, and sold out (or over the limit).
func (g *Gate) Hits() (window, soldOut int64) { return g.windowHits.Load(), g.soldHits.Load() }

// PlaceOrder implements flashorder.OrderPlacer.
func (g *Gate) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	now := g.Now()
	if err := g.windowRefusal(ctx, req.Items, now); err != nil {
		g.windowHits.Add(1)
		return nil, err
	}
	if err := g.soldOutRefusal(ctx, req, now); err != nil {
		g.soldHits.Add(1)
		return nil, err
	}
	epoch := g.epoch.Load()
	o, err := g.next.PlaceOrder(ctx, req)
	switch {
	case err == nil:
		for _, it := range req.Items {
			g.products.Touch(it.SKU)
		}
	case len(req.Items) == 1 && g.TTL > 0 && flashorder.ErrorCode(err) == flashorder.ESOLDOUT:
		g.learn(ctx, req.Items[0].SKU, epoch)
	}
	return o, err
}

// Lifecycle returns lc with CancelOrder also telling the gates that the
// order's stock came back: this gate at once (the product page reads it
// again, a sold-out mark is dropped), the others through the product cache's
// Changes at once and through Shared within Recheck.
func (g *Gate) Lifecycle(lc flashorder.OrderLifecycle) flashorder.OrderLifecycle {
	return &gateLifecycle{OrderLifecycle: lc, gate: g}
}

type gateLifecycle struct {
	flashorder.OrderLifecycle
	gate *Gate
}

func (l *gateLifecycle) CancelOrder(ctx context.Context, id string) (*flashorder.Order, error) {
	o, err := l.OrderLifecycle.CancelOrder(ctx, id)
	if err == nil {
		ctx := context.WithoutCancel(ctx)
		for _, it := range o.Items {
			l.gate.stockReturned(ctx, it.SKU)
		}
	}
	return o, err
}

// stockReturned tells every gate that sku has stock again.
func (g *Gate) stockReturned(ctx context.Context, sku string) {
	g.products.Touch(sku)
	g.forgetMark(sku)
	if g.Shared != nil {
		_ = g.Shared.ClearSoldOut(ctx, sku)
	}
	if g.products.Changes != nil {
		_ = g.products.Changes.Publish(ctx, sku)
	}
}

// windowRefusal returns the refusal of an order at now whose products are all
// cached and one of them outside its sale window (the first in SKU order),
// or nil.
func (g *Gate) windowRefusal(ctx context.Context, items []flashorder.ItemRequest, now time.Time) error {
	if g.products.TTL <= 0 {
		return nil
	}
	var first error
	firstSKU := ""
	for _, it := range items {
		refusal, ok := g.products.WindowRefusal(ctx, it.SKU, now)
		if !ok {
			return nil // unknown, or unreadable: the strategy decides
		}
		if refusal != nil && (first == nil || it.SKU < firstSKU) {
			first, firstSKU = refusal, it.SKU
		}
	}
	return first
}

// soldOutRefusal returns the refusal of an order whose every item is marked
// sold out: limit_exceeded when the user would exceed a product's limit,
// else sold_out, each naming the first such SKU in sorted order; or nil.
func (g *Gate) soldOutRefusal(ctx context.Context, req *flashorder.PlaceOrderRequest, now time.Time) error {
	if g.TTL <= 0 || len(req.Items) == 0 {
		return nil
	}
	ns := now.UnixNano()
	var over, sold error
	overSKU, soldSKU := "", ""
	for _, it := range req.Items {
		v, ok := g.marks.Load(it.SKU)
		if !ok {
			return nil
		}
		mark := v.(*soldOutMark)
		if ns >= mark.expires {
			g.marks.CompareAndDelete(it.SKU, mark)
			return nil
		}
		// One request per Recheck confirms the mark against Shared; the
		// crowd meanwhile goes on with it.
		if last := mark.checked.Load(); g.Shared != nil && ns-last >= int64(g.Recheck) && mark.checked.CompareAndSwap(last, ns) {
			if sold, err := g.Shared.SoldOut(ctx, it.SKU); err != nil || !sold {
				g.marks.CompareAndDelete(it.SKU, mark)
				return nil
			}
		}
		if ns >= mark.renewAt {
			g.renew(it.SKU)
		}
		if mark.limit > 0 && mark.held[req.UserID]+it.Quantity > mark.limit && (over == nil || it.SKU < overSKU) {
			over, overSKU = limitExceeded(req.UserID, it.SKU, mark.limit), it.SKU
		}
		if soldSKU == "" || it.SKU < soldSKU {
			sold, soldSKU = mark.soldOut, it.SKU
		}
	}
	if over != nil {
		return over
	}
	return sold
}

// renew learns sku again in the background, unless it is being learnt.
func (g *Gate) renew(sku string) {
	if _, busy := g.learning.LoadOrStore(sku, struct{}{}); busy {
		return
	}
	epoch := g.epoch.Load()
	go g.learnClaimed(context.Background(), sku, epoch)
}

// learnTimeout bounds one learn's database reads.
const learnTimeout = 5 * time.Second

// learn marks sku sold out when the database shows no stock, with what each
// user holds of it when it has a per-user limit, unless a product change
// arrived since epoch was read (the stock may be back). One learn per SKU
// runs at a time; the others return at once. It refreshes the product cache
// with what it read.
func (g *Gate) learn(ctx context.Context, sku string, epoch uint64) {
	if _, busy := g.learning.LoadOrStore(sku, struct{}{}); busy {
		return
	}
	g.learnClaimed(ctx, sku, epoch)
}

// learnClaimed is learn once this call holds sku's learning claim.
func (g *Gate) learnClaimed(ctx context.Context, sku string, epoch uint64) {
	defer g.learning.Delete(sku)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), learnTimeout)
	defer cancel()
	productEpoch := g.products.Epoch()
	p, err := g.store.Product(ctx, sku)
	if err != nil {
		return
	}
	if g.products.TTL > 0 {
		g.products.Put(p, productEpoch)
	}
	if p.Stock > 0 {
		g.marks.Delete(sku)
		return
	}
	mark := &soldOutMark{limit: p.PerUserLimit, soldOut: soldOut(sku)}
	if p.PerUserLimit > 0 {
		if mark.held, err = g.store.QuotaHolders(ctx, sku, g.MaxHolders); err != nil {
			return
		}
	}
	now := g.Now().UnixNano()
	mark.expires, mark.renewAt = now+int64(g.TTL), now+int64(g.TTL)/2
	mark.checked.Store(now)
	g.marks.Store(sku, mark)
	// Store, then check: a change that arrived meanwhile either deleted
	// this mark or moved the epoch on, and then the mark goes here.
	if g.epoch.Load() != epoch {
		g.marks.CompareAndDelete(sku, mark)
		return
	}
	if g.Shared != nil {
		_ = g.Shared.MarkSoldOut(ctx, sku, g.TTL)
	}
}

// forgetMark drops the mark on sku here: the product changed.
func (g *Gate) forgetMark(sku string) {
	g.epoch.Add(1)
	g.marks.Delete(sku)
}

// Forget drops everything the gate knows of sku, here and in Shared: stock
// was added or the product changed.
func (g *Gate) Forget(ctx context.Context, sku string) {
	g.products.Forget(sku)
	if g.Shared != nil {
		_ = g.Shared.ClearSoldOut(ctx, sku)
	}
}

// Store returns the gate's store with PutProduct also forgetting the
// product: in this process at once, in the others through the product
// cache's Changes and Shared. Hand it to whatever changes products (the HTTP
// server).
func (g *Gate) Store() flashorder.Store {
	return &gateStore{Store: g.products.Store(), gate: g}
}

type gateStore struct {
	flashorder.Store
	gate *Gate
}

// PutProduct clears the shared sold-out mark whether or not the update
// committed: a missing mark is always safe.
func (s *gateStore) PutProduct(ctx context.Context, p flashorder.Product) (*flashorder.Product, error) {
	stored, err := s.Store.PutProduct(ctx, p)
	if s.gate.Shared != nil {
		_ = s.gate.Shared.ClearSoldOut(context.WithoutCancel(ctx), p.SKU)
	}
	return stored, err
}
