// Package checkout holds flashorder's stock-deduction strategies, each a
// flashorder.OrderPlacer written against the root interfaces: Row (one
// transaction per order) and the strategies built on its transaction.
//
// It also holds the other half of the same stock accounting: Lifecycle,
// which ends orders (pay, cancel, expire) and gives their stock and per-user
// quota back, and Sweeper, which runs Lifecycle's expiry on one elected
// instance. They live here, not in a package of their own, because taking
// and giving back are one contract that changes as a whole: both follow
// flashorder.Tx's lock order (order rows, then stock rows by SKU, then the
// per-user counters), so that placing and ending orders cannot deadlock, and
// both count stock where every strategy does (the products row, from which
// the segment strategy refills its segments). A strategy that takes stock
// somewhere new must give it back the same way, and a reader finds both
// sides in this package. Sweeper is only Lifecycle's expiry, run on the one
// instance elected through a flashorder.Locker (internal/elect does the
// election), so it stays beside Lifecycle.
package checkout

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/failpoint"
)

// NewOrder returns the order that req will create, with a fresh id and
// creation time and no prices yet. Ids are UUIDv7: time-ordered, unguessable
// (74 random bits) and made without coordination between instances.
func NewOrder(req *flashorder.PlaceOrderRequest, now time.Time) (*flashorder.Order, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("checkout: new order id: %w", err)
	}
	items := make([]flashorder.OrderItem, len(req.Items))
	for i, it := range req.Items {
		items[i] = flashorder.OrderItem{SKU: it.SKU, Quantity: it.Quantity}
	}
	return &flashorder.Order{
		ID:             id.String(),
		UserID:         req.UserID,
		Status:         flashorder.StatusCreated,
		Items:          items,
		CreatedAt:      now.UTC().Truncate(time.Microsecond),
		IdempotencyKey: req.IdempotencyKey,
		Fingerprint:    fingerprint(req),
	}, nil
}

// fingerprint returns req's fingerprint, made now when the caller left it
// out (a request without an Idempotency-Key: only its stored order needs
// one).
func fingerprint(req *flashorder.PlaceOrderRequest) string {
	if req.Fingerprint == "" {
		req.Fingerprint = req.OrderRequest.Fingerprint()
	}
	return req.Fingerprint
}

// sortedSKUs returns the order's SKUs in ascending order: every strategy locks
// rows in this order, so that two multi-item orders cannot deadlock.
func sortedSKUs(o *flashorder.Order) []string {
	skus := make([]string, len(o.Items))
	for i, it := range o.Items {
		skus[i] = it.SKU
	}
	slices.SortFunc(skus, strings.Compare)
	return skus
}

// quantityOf returns the quantity of sku in o.
func quantityOf(o *flashorder.Order, sku string) int64 {
	for _, it := range o.Items {
		if it.SKU == sku {
			return it.Quantity
		}
	}
	return 0
}

// takeFunc takes qty units of sku inside tx, or reports false when the stock
// is short: the one step in which the per-order strategies differ.
type takeFunc func(ctx context.Context, tx flashorder.Tx, sku string, qty int64) (bool, error)

// takeFromRow takes stock with the product row's conditional decrement.
func takeFromRow(ctx context.Context, tx flashorder.Tx, sku string, qty int64) (bool, error) {
	return tx.TakeStock(ctx, sku, qty)
}

// placeInTx runs one order inside tx: it takes stock for each SKU in sorted
// order with take, then reserves the user's quota, then prices and inserts
// the order. Any refusal is returned as an error, so that the transaction
// rolls back and nothing changes. Refusals keep the API's precedence: unknown
// product, then per-user limit, then stock.
func placeInTx(ctx context.Context, tx flashorder.Tx, o *flashorder.Order, skus []string, take takeFunc) error {
	products, err := tx.Products(ctx, skus)
	if err != nil {
		return err
	}
	for _, sku := range skus {
		if products[sku] == nil {
			return flashorder.Errorf(flashorder.EUNKNOWNPRODUCT, "unknown product %q", sku)
		}
	}
	if err := checkWindows(o, products); err != nil {
		return err
	}
	for _, sku := range skus {
		ok, err := take(ctx, tx, sku, quantityOf(o, sku))
		if err != nil {
			return err
		}
		if !ok {
			if err := checkLimits(ctx, tx, o, skus, products); err != nil {
				return err
			}
			return soldOut(sku)
		}
	}
	// Fault tests freeze an instance here, holding its stock rows.
	failpoint.Hit(ctx, "checkout/stock-taken")
	for _, sku := range skus {
		limit := products[sku].PerUserLimit
		if limit == 0 {
			continue // counters are kept for limited SKUs only
		}
		ok, err := tx.ReserveQuota(ctx, o.UserID, sku, quantityOf(o, sku), limit)
		if err != nil {
			return err
		}
		if !ok {
			return limitExceeded(o.UserID, sku, limit)
		}
	}
	priceOrder(o, products)
	taken, err := tx.InsertOrders(ctx, []*flashorder.Order{o})
	if err != nil {
		return err
	}
	if len(taken) > 0 {
		return flashorder.ErrIdempotencyKeyTaken
	}
	return nil
}

// checkWindows refuses o when the sale window of one of its products is not
// open at the order's creation time: the one clock that judges an order is
// the one that stamps its created_at, so an order's created_at always lies
// inside the windows of its products. With several products not open it
// names the first in SKU order, as the other refusals do. Every product must
// be in products.
func checkWindows(o *flashorder.Order, products map[string]*flashorder.Product) error {
	var first error
	firstSKU := ""
	for _, it := range o.Items {
		if err := products[it.SKU].CheckWindow(o.CreatedAt); err != nil && (first == nil || it.SKU < firstSKU) {
			first, firstSKU = err, it.SKU
		}
	}
	return first
}

// checkLimits tells an order refused for stock whether it was over a per-user
// limit too, which the API reports first. It only reads.
func checkLimits(ctx context.Context, tx flashorder.QuotaTx, o *flashorder.Order, skus []string, products map[string]*flashorder.Product) error {
	for _, sku := range skus {
		limit := products[sku].PerUserLimit
		if limit == 0 {
			continue
		}
		k := flashorder.QuotaKey{UserID: o.UserID, SKU: sku}
		held, err := tx.Quotas(ctx, []flashorder.QuotaKey{k})
		if err != nil {
			return err
		}
		if held[k]+quantityOf(o, sku) > limit {
			return limitExceeded(o.UserID, sku, limit)
		}
	}
	return nil
}

// limitExceeded is the limit_exceeded refusal: the gate answers a crowd of
// users holding the limit with it, so it is built without fmt (two
// allocations instead of six); the message is what %q and %d would give.
func limitExceeded(user, sku string, limit int64) error {
	var buf [128]byte
	b := append(buf[:0], "user "...)
	b = strconv.AppendQuote(b, user)
	b = append(b, " would exceed the limit of "...)
	b = strconv.AppendInt(b, limit, 10)
	b = append(b, " units of "...)
	b = strconv.AppendQuote(b, sku)
	return &flashorder.Error{Code: flashorder.ELIMITEXCEEDED, Message: string(b)}
}

func soldOut(sku string) error {
	return flashorder.Errorf(flashorder.ESOLDOUT, "not enough stock of %q", sku)
}

// priceOrder sets each item's price from its product, the order's total and
// its payment deadline: the terms of the order, all read from the products of
// the transaction that stores it.
func priceOrder(o *flashorder.Order, products map[string]*flashorder.Product) {
	o.TotalCents = 0
	for i := range o.Items {
		o.Items[i].PriceCents = products[o.Items[i].SKU].PriceCents
		o.TotalCents += o.Items[i].PriceCents * o.Items[i].Quantity
	}
	o.ExpiresAt = paymentDeadline(o, products)
}

// paymentDeadline returns o's creation time plus the shortest payment window
// among its products that have one, or nil when none has: the lifecycle then
// applies orderd's --payment-timeout. Products without a window do not
// shorten it, so a drop's window holds in a cart with ordinary products. The
// deadline is stored with the order and never moves: a window changed later
// applies to later orders.
func paymentDeadline(o *flashorder.Order, products map[string]*flashorder.Product) *time.Time {
	var window time.Duration
	for _, it := range o.Items {
		if w := products[it.SKU].PaymentWindow; w > 0 && (window == 0 || w < window) {
			window = w
		}
	}
	if window == 0 {
		return nil
	}
	at := o.CreatedAt.Add(window).UTC().Truncate(time.Microsecond)
	return &at
}
