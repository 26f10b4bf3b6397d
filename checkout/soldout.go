package checkout

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashorder/flashorder"
)

var _ flashorder.OrderPlacer = (*SoldOutMemo)(nil)

// Defaults of SoldOutMemo.
const (
	// DefaultSoldOutTTL is how long a sold-out mark lasts. It bounds how long
	// stock that comes back without a product update (a cancelled or expired
	// order) stays unsold, and costs one database round trip per SKU and
	// instance per TTL while the SKU stays sold out.
	DefaultSoldOutTTL = time.Second
	// DefaultSoldOutRecheck is how often a local mark is confirmed against
	// the shared cache, so that stock added through another instance is
	// seen within that time.
	DefaultSoldOutRecheck = 100 * time.Millisecond
)

// SoldOutMemo is a flashorder.OrderPlacer around any strategy that remembers
// which SKUs are sold out, so that a storm of requests for a sold-out product
// is answered sold_out without a database round trip.
//
// It keeps the API's check order (unknown_product, then limit_exceeded, then
// sold_out) exact by remembering only what makes sold_out the only possible
// answer: a SKU is marked when a single-item order for it was refused sold_out
// and the product then read back with stock 0 and no per-user limit; an order
// is refused from the memo only when every one of its items is marked. Products
// with a per-user limit always go to the database, since a user who holds the
// limit must get limit_exceeded.
//
// A mark lasts TTL. Stock added through the Store returned by Store clears it
// at once in this process, and through Shared (when set) in the others within
// Recheck. Stock that returns otherwise (a cancelled order) is seen within
// TTL.
type SoldOutMemo struct {
	next  flashorder.OrderPlacer
	store flashorder.Store

	// Shared, when set, shares marks between instances; its errors count as
	// "not sold out", so the database decides.
	Shared flashorder.SoldOutCache
	// TTL is how long a mark lasts; the default is DefaultSoldOutTTL.
	TTL time.Duration
	// Recheck is how often a mark is confirmed against Shared; the default is
	// DefaultSoldOutRecheck.
	Recheck time.Duration
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock

	marks sync.Map // SKU -> *soldOutMark
	// epoch grows with every Forget: a mark learnt across a Forget is dropped.
	epoch atomic.Uint64
	hits  atomic.Int64
}

type soldOutMark struct {
	expires int64        // unix nanoseconds
	checked atomic.Int64 // unix nanoseconds of the last confirmation against Shared
}

// NewSoldOutMemo returns the memo around next; store is where next keeps
// products.
func NewSoldOutMemo(next flashorder.OrderPlacer, store flashorder.Store) *SoldOutMemo {
	return &SoldOutMemo{next: next, store: store, TTL: DefaultSoldOutTTL, Recheck: DefaultSoldOutRecheck, Now: time.Now}
}

// Hits returns how many orders the memo refused without the database.
func (m *SoldOutMemo) Hits() int64 { return m.hits.Load() }

// PlaceOrder implements flashorder.OrderPlacer.
func (m *SoldOutMemo) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	if sku, ok := m.soldOut(ctx, req.Items); ok {
		m.hits.Add(1)
		return nil, flashorder.Errorf(flashorder.ESOLDOUT, "not enough stock of %q", sku)
	}
	epoch := m.epoch.Load()
	o, err := m.next.PlaceOrder(ctx, req)
	if len(req.Items) == 1 && flashorder.ErrorCode(err) == flashorder.ESOLDOUT {
		m.learn(ctx, req.Items[0].SKU, epoch)
	}
	return o, err
}

// soldOut reports whether every item is marked sold out, and names the SKU
// that the database would have named: the first in sorted order.
func (m *SoldOutMemo) soldOut(ctx context.Context, items []flashorder.ItemRequest) (string, bool) {
	now := m.Now().UnixNano()
	first := ""
	for _, it := range items {
		v, ok := m.marks.Load(it.SKU)
		if !ok {
			return "", false
		}
		mark := v.(*soldOutMark)
		if now >= mark.expires {
			m.marks.CompareAndDelete(it.SKU, mark)
			return "", false
		}
		if m.Shared != nil && now-mark.checked.Load() >= int64(m.Recheck) {
			if sold, err := m.Shared.SoldOut(ctx, it.SKU); err != nil || !sold {
				m.marks.CompareAndDelete(it.SKU, mark)
				return "", false
			}
			mark.checked.Store(now)
		}
		if first == "" || strings.Compare(it.SKU, first) < 0 {
			first = it.SKU
		}
	}
	return first, len(items) > 0
}

// learn marks sku sold out when the database shows no stock and no per-user
// limit, unless Forget ran since epoch was read (the stock may be back).
func (m *SoldOutMemo) learn(ctx context.Context, sku string, epoch uint64) {
	p, err := m.store.Product(ctx, sku)
	if err != nil || p.Stock > 0 || p.PerUserLimit > 0 {
		return
	}
	now := m.Now().UnixNano()
	mark := &soldOutMark{expires: now + int64(m.TTL)}
	mark.checked.Store(now)
	m.marks.Store(sku, mark)
	// Store, then check: a Forget that ran meanwhile either deleted this
	// mark or moved the epoch on, and then the mark goes here.
	if m.epoch.Load() != epoch {
		m.marks.CompareAndDelete(sku, mark)
		return
	}
	if m.Shared != nil {
		_ = m.Shared.MarkSoldOut(ctx, sku, m.TTL)
	}
}

// Forget drops the mark on sku, here and in Shared: stock was added.
func (m *SoldOutMemo) Forget(ctx context.Context, sku string) {
	m.epoch.Add(1)
	m.marks.Delete(sku)
	if m.Shared != nil {
		_ = m.Shared.ClearSoldOut(ctx, sku)
	}
}

// Store returns the memo's store with PutProduct also forgetting the
// product's mark. Hand it to whatever changes products (the HTTP server).
func (m *SoldOutMemo) Store() flashorder.Store { return &forgettingStore{Store: m.store, memo: m} }

type forgettingStore struct {
	flashorder.Store
	memo *SoldOutMemo
}

// PutProduct forgets the product's mark whether or not the update committed:
// after an error the outcome is unknown, and a missing mark is always safe.
func (s *forgettingStore) PutProduct(ctx context.Context, p flashorder.Product) (*flashorder.Product, error) {
	stored, err := s.Store.PutProduct(ctx, p)
	s.memo.Forget(context.WithoutCancel(ctx), p.SKU)
	return stored, err
}
