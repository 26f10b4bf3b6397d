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
