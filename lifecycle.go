package flashorder

import (
	"context"
	"time"
)

// DefaultPaymentTimeout is how long an order may stay created (unpaid) before
// it expires and its stock returns.
const DefaultPaymentTimeout = 15 * time.Minute

// CanBecome reports whether an order in status s may move to status to. The
// state machine is flat: a created order moves once, to paid, cancelled or
// expired, and every other status is final.
func (s Status) CanBecome(to Status) bool {
	return s == StatusCreated && (to == StatusPaid || to == StatusCancelled || to == StatusExpired)
}

// OrderLifecycle moves orders through their statuses after creation.
type OrderLifecycle interface {
	// PayOrder marks a created order paid. It returns ENOTFOUND, or
	// EINVALIDSTATE when the order is not created or its payment window has
	// closed (the order then expires and its stock returns).
	PayOrder(ctx context.Context, id string) (*Order, error)
	// CancelOrder cancels a created order and returns its stock and the
	// user's per-user-limit quantity. It returns ENOTFOUND or EINVALIDSTATE.
	CancelOrder(ctx context.Context, id string) (*Order, error)
}

// StockReturner gives the stock of cancelled and expired orders back, inside
// the transaction that ends them, the way its deduction strategy keeps stock
// (the products row, a segment, ...).
type StockReturner interface {
	// ReturnStock adds each item's quantity back to the SKU's available
	// stock. items hold distinct SKUs in ascending order, the order in
	// which every strategy locks product rows.
	ReturnStock(ctx context.Context, tx Tx, items []ItemRequest) error
}
