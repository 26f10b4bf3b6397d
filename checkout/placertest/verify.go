package placertest

import (
	"errors"
	"maps"
	"reflect"
	"slices"

	"github.com/flashorder/flashorder"
)

// checkReturned checks an accepted order as the placer returned it: a new
// created order for exactly the request's user and items, priced from the
// products.
func (e *env) checkReturned(req *flashorder.PlaceOrderRequest, o *flashorder.Order) {
	e.t.Helper()
	if o == nil {
		e.t.Errorf("user %s items %v: accepted with a nil order", req.UserID, req.Items)
		return
	}
	if o.ID == "" || o.UserID != req.UserID || o.Status != flashorder.StatusCreated || o.IdempotencyKey != req.IdempotencyKey {
		e.t.Errorf("accepted order %+v does not match the request %+v (key %q)", o, req.OrderRequest, req.IdempotencyKey)
		return
	}
	if len(o.Items) != len(req.Items) {
		e.t.Errorf("order %s has %d items, the request %d", o.ID, len(o.Items), len(req.Items))
		return
	}
	var total int64
	for i, it := range o.Items {
		p := e.products[it.SKU]
		if it.SKU != req.Items[i].SKU || it.Quantity != req.Items[i].Quantity || p == nil || it.PriceCents != p.PriceCents {
			e.t.Errorf("order %s item %d is %+v; the request says %+v", o.ID, i, it, req.Items[i])
			return
		}
		total += it.PriceCents * it.Quantity
	}
	if o.TotalCents != total {
		e.t.Errorf("order %s totals %d cents, its items %d", o.ID, o.TotalCents, total)
	}
}

// verify checks the database after a subtest. First DESIGN.md's invariants,
// with the one checker every suite and fault test uses
// (gormdb.CheckInvariants): no oversell, every accepted order stored, no key
// with two orders, every order whole, per-user limits held. Then what only
// this suite knows, the placers' answers: every accepted order stored as
// accepted and no other order of the subtest's users, no key accepted twice,
// stock sold equal to the units of active accepted orders, and the per-user
// counters equal to the units held. It returns the stored orders by id.
func (e *env) verify() map[string]*flashorder.Order {
	e.t.Helper()
	e.checkInvariants()
	stored := e.storedOrders()
	e.checkAccepted(stored)
	e.checkKeys()
	e.checkStock(stored)
	e.checkCounters(stored)
	return stored
}

// checkInvariants checks DESIGN.md's invariants in the whole database, the
// accepted orders being the ones answered as created.
func (e *env) checkInvariants() {
	e.t.Helper()
	e.mu.Lock()
	ids := make([]string, len(e.accepted))
	for i, a := range e.accepted {
		ids[i] = a.order.ID
	}
	e.mu.Unlock()
	inv, err := e.db.CheckInvariants(e.ctx, ids)
	if err != nil {
		e.t.Fatalf("check invariants: %v", err)
	}
	for _, v := range inv.Violations {
		e.t.Errorf("invariant: %s", v)
	}
}

// storedOrders returns every stored order of the subtest's users by id,
// failing on an order that no placer accepted (a phantom order).
func (e *env) storedOrders() map[string]*flashorder.Order {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := map[string]bool{}
	for _, a := range e.accepted {
		ids[a.order.ID] = true
	}
	stored := map[string]*flashorder.Order{}
	for user := range e.users {
		f := flashorder.OrderFilter{UserID: user, Limit: flashorder.MaxListLimit}
		for {
			page, err := e.db.Orders(e.ctx, f)
			if err != nil {
				e.t.Fatalf("list orders of %s: %v", user, err)
			}
			for _, o := range page.Orders {
				if !ids[o.ID] {
					e.t.Errorf("order %s of %s (items %+v) is stored, but no placer accepted it", o.ID, user, o.Items)
				}
				stored[o.ID] = o
			}
			if page.Next == "" {
				break
			}
			f.Before = page.Next
		}
	}
	return stored
}

// checkAccepted checks that every accepted order is stored with the same
// user, items, total, creation time and fingerprint, and still created unless
// the subtest ends orders.
func (e *env) checkAccepted(stored map[string]*flashorder.Order) {
	e.t.Helper()
	for _, a := range e.accepted {
		s := stored[a.order.ID]
		if s == nil {
			e.t.Errorf("order %s of %s was accepted but is not stored", a.order.ID, a.order.UserID)
			continue
		}
		if s.UserID != a.order.UserID || s.TotalCents != a.order.TotalCents || !s.CreatedAt.Equal(a.order.CreatedAt) ||
			s.Fingerprint != a.req.Fingerprint || !slices.Equal(s.Items, a.order.Items) || !sameTime(s.ExpiresAt, a.order.ExpiresAt) {
			e.t.Errorf("order %s is stored as %+v, accepted as %+v", a.order.ID, s, a.order)
		}
		if s.Status != flashorder.StatusCreated && !e.lifecycle {
			e.t.Errorf("order %s is %s", a.order.ID, s.Status)
		}
	}
}

// checkKeys checks that no key belongs to two accepted orders, that the
// store finds each accepted order by its key, and that every key answered
// ErrIdempotencyKeyTaken belongs to an accepted order (the HTTP layer looks
// the order up to replay it; without one its client gets a 503).
func (e *env) checkKeys() {
	e.t.Helper()
	byKey := map[string]string{}
	defer func() {
		for k := range e.takenKeys {
			if _, stored := byKey[k]; !stored {
				e.t.Errorf("key %q was answered ErrIdempotencyKeyTaken, but no accepted order holds it", k)
			}
		}
	}()
	for _, a := range e.accepted {
		k := a.req.IdempotencyKey
		if k == "" {
			continue
		}
		if other, dup := byKey[k]; dup {
			e.t.Errorf("key %q was accepted twice: orders %s and %s", k, other, a.order.ID)
			continue
		}
		byKey[k] = a.order.ID
		o, err := e.db.OrderByIdempotencyKey(e.ctx, k)
		if err != nil || o.ID != a.order.ID {
			e.t.Errorf("order by key %q: %v %v, want order %s", k, o, err, a.order.ID)
		}
	}
}

// activeUnits sums the units of the stored active orders: by SKU, and by
// user and SKU.
func activeUnits(stored map[string]*flashorder.Order) (bySKU map[string]int64, byUser map[[2]string]int64) {
	bySKU, byUser = map[string]int64{}, map[[2]string]int64{}
	for _, o := range stored {
		if !o.Status.Active() {
			continue
		}
		for _, it := range o.Items {
			bySKU[it.SKU] += it.Quantity
			byUser[[2]string{o.UserID, it.SKU}] += it.Quantity
		}
	}
	return bySKU, byUser
}

// checkStock checks each product of the subtest: restocked as put, sold equal
// to the units of its active orders, available the rest, and the store's
// product view agreeing with the audit.
func (e *env) checkStock(stored map[string]*flashorder.Order) {
	e.t.Helper()
	a, err := e.db.Audit(e.ctx)
	if err != nil {
		e.t.Fatalf("audit: %v", err)
	}
	lines := map[string]flashorder.AuditLine{}
	for _, l := range a.Products {
		lines[l.SKU] = l
	}
	sold, _ := activeUnits(stored)
	for sku, p := range e.products {
		l := lines[sku]
		want := flashorder.NewAuditLine(sku, p.Restocked, p.Restocked-sold[sku], sold[sku])
		if l != want {
			e.t.Errorf("%s: audit %+v, want %+v (the accepted orders hold %d units)", sku, l, want, sold[sku])
		}
		got, err := e.db.Product(e.ctx, sku)
		if err != nil {
			e.t.Errorf("product %s: %v", sku, err)
		} else if got.Stock != l.Available {
			e.t.Errorf("product %s shows stock %d, the audit %d available", sku, got.Stock, l.Available)
		}
	}
}

// checkCounters checks that the counters behind the per-user limits
// (Tx.Quotas) equal what each user holds in active orders; checkInvariants
// checks the limits themselves.
func (e *env) checkCounters(stored map[string]*flashorder.Order) {
	e.t.Helper()
	_, held := activeUnits(stored)
	users := make([]string, 0, len(e.users))
	for u := range e.users {
		users = append(users, u)
	}
	for sku, p := range e.products {
		if p.PerUserLimit == 0 {
			continue
		}
		counters := e.quotas(sku, users)
		for _, u := range users {
			h := held[[2]string{u, sku}]
			if counters[u] != h {
				e.t.Errorf("the per-user counter of %s for %s is %d; the user holds %d units in active orders", u, sku, counters[u], h)
			}
		}
	}
}

// quotas reads the per-user counters of sku, by user.
func (e *env) quotas(sku string, users []string) map[string]int64 {
	e.t.Helper()
	keys := make([]flashorder.QuotaKey, len(users))
	for i, u := range users {
		keys[i] = flashorder.QuotaKey{UserID: u, SKU: sku}
	}
	var q map[flashorder.QuotaKey]int64
	err := e.db.InTx(e.ctx, func(tx flashorder.Tx) error {
		var err error
		q, err = tx.Quotas(e.ctx, keys)
		return err
	})
	if err != nil {
		e.t.Fatalf("read the counters of %s: %v", sku, err)
	}
	byUser := make(map[string]int64, len(q))
	for k, n := range q {
		if k.SKU == sku {
			byUser[k.UserID] = n
		}
	}
	return byUser
}

// snapshot is what the database shows of the subtest's products and users.
type snapshot struct {
	products map[string]flashorder.Product
	quotas   map[string]map[string]int64
}

// snapshot reads the subtest's products and the per-user counters of users.
func (e *env) snapshot(users []string) snapshot {
	e.t.Helper()
	s := snapshot{products: map[string]flashorder.Product{}, quotas: map[string]map[string]int64{}}
	for sku := range e.products {
		p, err := e.db.Product(e.ctx, sku)
		if err != nil {
			e.t.Fatalf("product %s: %v", sku, err)
		}
		s.products[sku] = *p
		s.quotas[sku] = e.quotas(sku, users)
	}
	return s
}

// sameSnapshot fails for every difference between before and after.
func (e *env) sameSnapshot(what string, before, after snapshot) {
	e.t.Helper()
	for sku, b := range before.products {
		if a := after.products[sku]; !reflect.DeepEqual(a, b) {
			e.t.Errorf("%s changed product %s: %+v, before %+v", what, sku, a, b)
		}
		if a, b := after.quotas[sku], before.quotas[sku]; !maps.Equal(a, b) {
			e.t.Errorf("%s changed the per-user counters of %s: %v, before %v", what, sku, a, b)
		}
	}
}

// keyFree fails when an order is stored under key.
func (e *env) keyFree(key string) {
	e.t.Helper()
	o, err := e.db.OrderByIdempotencyKey(e.ctx, key)
	var ferr *flashorder.Error
	if err == nil || !errors.As(err, &ferr) || ferr.Code != flashorder.ENOTFOUND {
		e.t.Errorf("key %q: order %+v, %v; want none stored", key, o, err)
	}
}
