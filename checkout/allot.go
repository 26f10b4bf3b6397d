package checkout

import (
	"context"
	"errors"
	"fmt"

	"github.com/flashorder/flashorder"
)

// errAllotmentInvariant marks a batch allotment that broke one of its own
// invariants: a programming error in this file, never the database's. The
// batch fails with it (503 to each of its orders, the transaction rolled
// back, nothing ordered), and orderhttp logs every 503 with its cause.
var errAllotmentInvariant = errors.New("checkout: batch allotment invariant violated")

// allotment decides which orders of one batch transaction are accepted, in
// two steps:
//
//   - predict allots from the products and quotas as read, without locks,
//     and inserts the orders it accepts, until every order it accepts is
//     inserted (the unique index settles idempotency keys);
//   - settle allots again from the products as locked and the quotas read
//     under the locks, among the inserted orders only, and returns the
//     orders to keep.
//
// Both judge an order by one rule (ledger.refusal) and end by checking the
// allotment's invariants (check). The allotment lives for one run of the
// transaction: InTx may run it again, and commitInTx then makes a new one.
type allotment struct {
	batch    []*pendingOrder
	answers  []error                    // answers[i] is batch[i]'s: nil if accepted
	inserted map[*flashorder.Order]bool // orders this transaction inserted
	twinOf   map[int]int                // later orders of an accepted order's key: its index
}

func newAllotment(batch []*pendingOrder, answers []error) *allotment {
	return &allotment{batch: batch, answers: answers,
		inserted: make(map[*flashorder.Order]bool, len(batch)), twinOf: map[int]int{}}
}

// predict allots from products and held, as read, and inserts the orders
// that allotment accepts. An order whose key a stored order holds is
// dropped, which can only leave more for the others: predict allots again
// and inserts the orders it accepts now, until no key is taken. Every order
// keeps the answer of the last allotment unless settle decides it.
func (a *allotment) predict(ctx context.Context, tx flashorder.OrderTx, products map[string]*flashorder.Product, held map[flashorder.QuotaKey]int64) error {
	keyTaken := map[string]bool{} // keys that stored orders hold
	for {
		accepted := a.predictOnce(products, held, keyTaken)
		var fresh []*flashorder.Order
		for _, o := range accepted {
			if !a.inserted[o] {
				fresh = append(fresh, o)
			}
		}
		if len(fresh) == 0 {
			return a.check("predict", products, held, accepted)
		}
		taken, err := tx.InsertOrders(ctx, fresh)
		if err != nil {
			return err
		}
		for _, o := range fresh {
			if o.IdempotencyKey != "" && taken[o.IdempotencyKey] {
				keyTaken[o.IdempotencyKey] = true
			} else {
				a.inserted[o] = true
			}
		}
		if len(taken) == 0 {
			return a.check("predict", products, held, accepted)
		}
	}
}

// predictOnce allots the whole batch once, sets every answer and a.twinOf,
// and returns the accepted orders. An order whose key a stored order holds,
// or an earlier accepted order of the batch, is told the key is taken.
func (a *allotment) predictOnce(products map[string]*flashorder.Product, held map[flashorder.QuotaKey]int64, keyTaken map[string]bool) []*flashorder.Order {
	clear(a.twinOf)
	l := newLedger(products, held)
	owner := map[string]int{} // keys of accepted orders: the order's index
	accepted := make([]*flashorder.Order, 0, len(a.batch))
	for i, p := range a.batch {
		o := p.order
		if k := o.IdempotencyKey; k != "" {
			// Once an order of the batch took a key, a later twin is told
			// the key is taken, and the HTTP layer replays the owner's
			// stored order to it.
			if j, ok := owner[k]; ok {
				a.answers[i] = flashorder.ErrIdempotencyKeyTaken
				a.twinOf[i] = j
				continue
			}
			if keyTaken[k] {
				a.answers[i] = flashorder.ErrIdempotencyKeyTaken
				continue
			}
		}
		if a.answers[i] = l.refusal(o); a.answers[i] != nil {
			continue
		}
		if o.IdempotencyKey != "" {
			owner[o.IdempotencyKey] = i
		}
		l.take(o)
		accepted = append(accepted, o)
	}
	return accepted
}

// settle allots from products and held as they are under the row locks,
// among the inserted orders only (the others keep the answers predict gave
// them), and returns the orders to keep. Inserted orders have distinct keys
// (the unique index saw to it), so no key rule applies; but a twin whose
// owner settle refuses gets the owner's answer: no order holds the key.
func (a *allotment) settle(products map[string]*flashorder.Product, held map[flashorder.QuotaKey]int64) ([]*flashorder.Order, error) {
	l := newLedger(products, held)
	accepted := make([]*flashorder.Order, 0, len(a.inserted))
	for i, p := range a.batch {
		if !a.inserted[p.order] {
			continue
		}
		if a.answers[i] = l.refusal(p.order); a.answers[i] == nil {
			l.take(p.order)
			accepted = append(accepted, p.order)
		}
	}
	for i, j := range a.twinOf {
		if a.answers[j] != nil {
			a.answers[i] = a.answers[j]
		}
	}
	return accepted, a.check("settle", products, held, accepted)
}

// refusedInserted returns the ids of the inserted orders that settle
// refused.
func (a *allotment) refusedInserted() []string {
	var ids []string
	for i, p := range a.batch {
		if a.inserted[p.order] && a.answers[i] != nil {
			ids = append(ids, p.order.ID)
		}
	}
	return ids
}

// check returns an error wrapping errAllotmentInvariant when the allotment
// broke an invariant by the end of step: every order answered once (accepted
// with a nil answer, or refused), the accepted orders inserted and holding
// distinct keys, no stock below zero, no quota the batch raised above its
// limit. Stock and quotas are summed again from the accepted orders with
// totals, what the transaction writes, not taken from the ledger; the
// database checks the same stock once more (TakeStocks fails unless every
// row had the units).
func (a *allotment) check(step string, products map[string]*flashorder.Product, held map[flashorder.QuotaKey]int64, accepted []*flashorder.Order) error {
	isAccepted := make(map[*flashorder.Order]bool, len(accepted))
	keys := map[string]bool{}
	for _, o := range accepted {
		if isAccepted[o] {
			return violated(step, "order %s accepted twice", o.ID)
		}
		isAccepted[o] = true
		if k := o.IdempotencyKey; k != "" {
			if keys[k] {
				return violated(step, "two accepted orders hold key %q", k)
			}
			keys[k] = true
		}
	}
	inBatch := 0
	for i, p := range a.batch {
		o := p.order
		switch {
		case !isAccepted[o] && a.answers[i] == nil:
			return violated(step, "order %s neither accepted nor refused", o.ID)
		case !isAccepted[o]:
			continue
		case a.answers[i] != nil:
			return violated(step, "order %s accepted and refused (%v)", o.ID, a.answers[i])
		case !a.inserted[o]:
			return violated(step, "order %s accepted but not inserted", o.ID)
		}
		inBatch++
	}
	if inBatch != len(accepted) {
		return violated(step, "%d accepted orders are not in the batch", len(accepted)-inBatch)
	}
	take, add := totals(accepted, products)
	for sku, n := range take {
		switch p := products[sku]; {
		case p == nil:
			return violated(step, "%d units of %q taken, an unknown product", n, sku)
		case p.Stock < n:
			return violated(step, "%d units of %q taken, more than its stock of %d", n, sku, p.Stock)
		}
	}
	for k, n := range add {
		if limit := products[k.SKU].PerUserLimit; held[k]+n > limit {
			return violated(step, "user %q would hold %d units of %q, over its limit of %d", k.UserID, held[k]+n, k.SKU, limit)
		}
	}
	return nil
}

// violated returns the error of a broken allotment invariant: unavailable
// to the client, the details only in the wrapped cause.
func violated(step, format string, args ...any) error {
	return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the order could not be placed; nothing was ordered; retry later",
		Err: fmt.Errorf("%w after %s: %s", errAllotmentInvariant, step, fmt.Sprintf(format, args...))}
}

// totals returns the stock to take per SKU and the quota to add per user and
// limited SKU for the accepted orders.
func totals(accepted []*flashorder.Order, products map[string]*flashorder.Product) (map[string]int64, map[flashorder.QuotaKey]int64) {
	take := map[string]int64{}
	add := map[flashorder.QuotaKey]int64{}
	for _, o := range accepted {
		for _, it := range o.Items {
			take[it.SKU] += it.Quantity
			if limited(products, it.SKU) {
				add[flashorder.QuotaKey{UserID: o.UserID, SKU: it.SKU}] += it.Quantity
			}
		}
	}
	return take, add
}

// limited reports whether sku has a per-user limit.
func limited(products map[string]*flashorder.Product, sku string) bool {
	p := products[sku]
	return p != nil && p.PerUserLimit > 0
}

// ledger is the stock and the per-user quotas left while a batch is
// allotted: first come first served, each order all or nothing.
type ledger struct {
	products map[string]*flashorder.Product
	stock    map[string]int64
	quota    map[flashorder.QuotaKey]int64
}

func newLedger(products map[string]*flashorder.Product, held map[flashorder.QuotaKey]int64) *ledger {
	l := &ledger{products: products, stock: make(map[string]int64, len(products)), quota: make(map[flashorder.QuotaKey]int64, len(held))}
	for sku, p := range products {
		l.stock[sku] = p.Stock
	}
	for k, n := range held {
		l.quota[k] = n
	}
	return l
}

// refusal returns why o cannot be accepted with the stock and quotas left,
// or nil. Its order is the API's precedence: unknown product, then the sale
// window, then the per-user limit, then stock. predict and settle both judge
// by it alone.
func (l *ledger) refusal(o *flashorder.Order) error {
	for _, it := range o.Items {
		if l.products[it.SKU] == nil {
			return flashorder.Errorf(flashorder.EUNKNOWNPRODUCT, "unknown product %q", it.SKU)
		}
	}
	if err := checkWindows(o, l.products); err != nil {
		return err
	}
	for _, it := range o.Items {
		limit := l.products[it.SKU].PerUserLimit
		if limit > 0 && l.quota[flashorder.QuotaKey{UserID: o.UserID, SKU: it.SKU}]+it.Quantity > limit {
			return limitExceeded(o.UserID, it.SKU, limit)
		}
	}
	for _, it := range o.Items {
		if l.stock[it.SKU] < it.Quantity {
			return soldOut(it.SKU)
		}
	}
	return nil
}

// take takes o's units from the stock and quotas left, and prices o from the
// products it was judged by.
func (l *ledger) take(o *flashorder.Order) {
	for _, it := range o.Items {
		l.stock[it.SKU] -= it.Quantity
		if limited(l.products, it.SKU) {
			l.quota[flashorder.QuotaKey{UserID: o.UserID, SKU: it.SKU}] += it.Quantity
		}
	}
	priceOrder(o, l.products)
}
