package checkout

import (
	"context"
	"time"

	"github.com/flashorder/flashorder"
)

var _ flashorder.OrderPlacer = (*Segment)(nil)

// DefaultSegments is the default number of stock segments per SKU.
const DefaultSegments = 16

// Segment is the `segment` strategy: each SKU's available stock is spread over
// Segments rows, and an order takes its units from one segment that has them,
// chosen at random (skipping segments that other transactions hold, where the
// engine has SKIP LOCKED), so that concurrent orders of a hot SKU lock
// different rows. When no single segment has the units, the order locks the
// product row and every segment, takes from their total and spreads the rest
// evenly again; it is sold out only when the total is short. Otherwise an
// order is the row strategy's transaction. Cancelled and expired orders give
// their stock back to the product row (the lifecycle's default), which counts
// as available and moves into the segments at the next refill.
type Segment struct {
	store flashorder.Store
	// Segments is the number of segments per SKU; the default is
	// DefaultSegments.
	Segments int
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock
}

// NewSegment returns the segment strategy on store.
func NewSegment(store flashorder.Store) *Segment {
	return &Segment{store: store, Segments: DefaultSegments, Now: time.Now}
}

// PlaceOrder implements flashorder.OrderPlacer.
func (s *Segment) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	o, err := NewOrder(req, s.Now())
	if err != nil {
		return nil, err
	}
	skus := sortedSKUs(o)
	if err := s.store.InTx(ctx, func(tx flashorder.Tx) error {
		return placeInTx(ctx, tx, o, skus, s.take)
	}); err != nil {
		return nil, err
	}
	return o, nil
}

func (s *Segment) take(ctx context.Context, tx flashorder.Tx, sku string, qty int64) (bool, error) {
	ok, err := tx.TakeFromSegment(ctx, sku, qty, s.Segments)
	if ok || err != nil {
		return ok, err
	}
	return tx.RefillSegments(ctx, sku, qty, s.Segments)
}
