package checkout

import (
	"context"
	"time"

	"github.com/flashorder/flashorder"
)

var _ flashorder.OrderPlacer = (*Row)(nil)

// Row is the `row` strategy: one database transaction per order that takes
// stock with a conditional decrement per SKU in sorted order, then reserves
// the user's quota of the limited SKUs, and inserts the order. Every order of a hot SKU waits for that SKU's
// row lock, so throughput is bounded by one commit per order.
type Row struct {
	store flashorder.Store
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock
}

// NewRow returns the row strategy on store.
func NewRow(store flashorder.Store) *Row {
	return &Row{store: store, Now: time.Now}
}

// PlaceOrder implements flashorder.OrderPlacer.
func (r *Row) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	o, err := NewOrder(req, r.Now())
	if err != nil {
		return nil, err
	}
	skus := sortedSKUs(o)
	if err := r.store.InTx(ctx, func(tx flashorder.Tx) error {
		return placeInTx(ctx, tx, o, skus, takeFromRow)
	}); err != nil {
		return nil, err
	}
	return o, nil
}
