package checkout

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/flashorder/flashorder"
)

var _ flashorder.OrderLifecycle = (*Lifecycle)(nil)

// DefaultExpireBatch is how many orders one expiry transaction ends at most.
const DefaultExpireBatch = 100

// Lifecycle ends orders: payment, cancellation and expiry, each an atomic
// conditional transition out of created. Cancellation and expiry return the
// stock to the products row (every strategy counts it there; the segment
// strategy refills its segments from it) and the user's per-user-limit
// quantity in the same transaction.
//
// Locks follow flashorder.Tx's lock order, so that ending and placing orders
// cannot deadlock: the order rows first (placement takes none that exist),
// then the stock rows sorted by SKU, then the user_purchases counters, which
// every writer touches only under their product's lock.
type Lifecycle struct {
	store flashorder.Store

	// PaymentTimeout is how long an order without a payment window of its
	// own (Order.ExpiresAt, set from its products' windows) may stay unpaid;
	// the default is flashorder.DefaultPaymentTimeout.
	PaymentTimeout time.Duration
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock
}

// NewLifecycle returns the lifecycle of the orders in store.
func NewLifecycle(store flashorder.Store) *Lifecycle {
	return &Lifecycle{store: store, PaymentTimeout: flashorder.DefaultPaymentTimeout, Now: time.Now}
}

// PayOrder implements flashorder.OrderLifecycle. An order whose payment window
// closed but that the sweeper has not reached yet is expired here instead, so
// that a late payment is refused whatever the sweeper's lag.
func (l *Lifecycle) PayOrder(ctx context.Context, id string) (*flashorder.Order, error) {
	o, err := l.store.Order(ctx, id)
	if err != nil {
		return nil, err
	}
	if !o.Status.CanBecome(flashorder.StatusPaid) {
		return nil, flashorder.Errorf(flashorder.EINVALIDSTATE, "the order is %s; only a created order can be paid", o.Status)
	}
	if o.Due(l.Now(), l.PaymentTimeout) {
		// Neither created_at nor expires_at ever changes, so this decision
		// cannot go stale; the conditional update still decides between us
		// and a racing end.
		if _, err := l.end(ctx, []string{id}, flashorder.StatusExpired); err != nil {
			return nil, err
		}
		return nil, flashorder.Errorf(flashorder.EINVALIDSTATE, "the payment window of this order has closed")
	}
	var paid *flashorder.Order
	err = l.store.InTx(ctx, func(tx flashorder.Tx) error {
		paid, err = tx.TransitionOrder(ctx, id, flashorder.StatusCreated, flashorder.StatusPaid)
		return err
	})
	if err != nil {
		return nil, err
	}
	return paid, nil
}

// CancelOrder implements flashorder.OrderLifecycle.
func (l *Lifecycle) CancelOrder(ctx context.Context, id string) (*flashorder.Order, error) {
	var out *flashorder.Order
	err := l.store.InTx(ctx, func(tx flashorder.Tx) error {
		o, err := tx.TransitionOrder(ctx, id, flashorder.StatusCreated, flashorder.StatusCancelled)
		if err != nil {
			return err
		}
		out = o
		return l.giveBack(ctx, tx, []*flashorder.Order{o})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ExpireDue expires, in one transaction, up to limit orders whose payment
// window has closed (Order.Due: their own ExpiresAt, or PaymentTimeout after
// their creation), the earliest closed first, and returns them. An order that
// was paid or cancelled a moment before is skipped: the conditional update
// decides. When ctx ends before the commit (say, the sweeper lost its
// leadership), the transaction rolls back and nothing changes.
func (l *Lifecycle) ExpireDue(ctx context.Context, limit int) ([]*flashorder.Order, error) {
	if limit <= 0 {
		limit = DefaultExpireBatch
	}
	var expired []*flashorder.Order
	err := l.store.InTx(ctx, func(tx flashorder.Tx) error {
		ids, err := tx.OrdersDue(ctx, l.Now(), l.PaymentTimeout, limit)
		if err != nil || len(ids) == 0 {
			return err
		}
		expired, err = l.endInTx(ctx, tx, ids, flashorder.StatusExpired)
		if err != nil {
			return err
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	return expired, nil
}

// end moves the given created orders to status to in one transaction and gives
// their stock back; orders no longer created are skipped.
func (l *Lifecycle) end(ctx context.Context, ids []string, to flashorder.Status) ([]*flashorder.Order, error) {
	var ended []*flashorder.Order
	err := l.store.InTx(ctx, func(tx flashorder.Tx) error {
		var err error
		ended, err = l.endInTx(ctx, tx, ids, to)
		return err
	})
	return ended, err
}

func (l *Lifecycle) endInTx(ctx context.Context, tx flashorder.Tx, ids []string, to flashorder.Status) ([]*flashorder.Order, error) {
	ended := make([]*flashorder.Order, 0, len(ids))
	for _, id := range ids {
		o, err := tx.TransitionOrder(ctx, id, flashorder.StatusCreated, to)
		switch flashorder.ErrorCode(err) {
		case "":
			ended = append(ended, o)
		case flashorder.EINVALIDSTATE, flashorder.ENOTFOUND:
			// Paid, cancelled or expired since it was picked: not ours.
		default:
			return nil, err
		}
	}
	return ended, l.giveBack(ctx, tx, ended)
}

// giveBack returns the stock of ended orders and releases their per-user
// quota, summed per SKU and per (user, SKU), in the Tx lock order: product rows
// first (sorted), then the counters, which are only written under their
// product's lock.
func (l *Lifecycle) giveBack(ctx context.Context, tx flashorder.Tx, orders []*flashorder.Order) error {
	if len(orders) == 0 {
		return nil
	}
	type quotaKey struct{ user, sku string }
	quota := map[quotaKey]int64{}
	stock := map[string]int64{}
	for _, o := range orders {
		for _, it := range o.Items {
			quota[quotaKey{o.UserID, it.SKU}] += it.Quantity
			stock[it.SKU] += it.Quantity
		}
	}
	items := make([]flashorder.ItemRequest, 0, len(stock))
	for sku, q := range stock {
		items = append(items, flashorder.ItemRequest{SKU: sku, Quantity: q})
	}
	slices.SortFunc(items, func(a, b flashorder.ItemRequest) int { return strings.Compare(a.SKU, b.SKU) })
	if err := returnStock(ctx, tx, items); err != nil {
		return err
	}
	keys := make([]quotaKey, 0, len(quota))
	for k := range quota {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b quotaKey) int {
		return cmp.Or(strings.Compare(a.sku, b.sku), strings.Compare(a.user, b.user))
	})
	for _, k := range keys {
		if err := tx.ReleaseQuota(ctx, k.user, k.sku, quota[k]); err != nil {
			return err
		}
	}
	return nil
}

// returnStock adds each item's quantity back to its SKU's products row; items
// hold distinct SKUs in ascending order, the order in which every strategy
// locks product rows.
func returnStock(ctx context.Context, tx flashorder.LifecycleTx, items []flashorder.ItemRequest) error {
	for _, it := range items {
		if err := tx.ReturnStock(ctx, it.SKU, it.Quantity); err != nil {
			return err
		}
	}
	return nil
}
