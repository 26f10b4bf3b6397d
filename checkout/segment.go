package checkout

import (
	"context"
	"errors"
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
// different rows. When no single segment has the units, the order ends its
// transaction and runs again with that SKU on the refill path: lock the
// product row and every segment, take from their total and spread the rest
// again. It is sold out only when the total is short. (The new transaction
// matters: a failed look at the segments may leave one locked, and the
// refill locks the product row before the segments.) Otherwise an order is
// the row strategy's transaction. Cancelled and expired orders give their
// stock back to the product row (the lifecycle's default), which counts as
// available and moves into the segments at the next refill.
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

// needRefill ends a transaction whose order found no segment with the units
// of a SKU; the order runs again with that SKU on the refill path.
type needRefill struct{ sku string }

func (e *needRefill) Error() string { return "checkout: no segment of " + e.sku + " has the units" }

// PlaceOrder implements flashorder.OrderPlacer.
func (s *Segment) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	o, err := NewOrder(req, s.Now())
	if err != nil {
		return nil, err
	}
	skus := sortedSKUs(o)
	// refill holds the SKUs that go straight to the refill path; each
	// attempt adds one, so there are at most len(skus)+1 attempts.
	var refill map[string]bool
	for {
		err := s.store.InTx(ctx, func(tx flashorder.Tx) error {
			return placeInTx(ctx, tx, o, skus, func(ctx context.Context, tx flashorder.Tx, sku string, qty int64) (bool, error) {
				if refill[sku] {
					return tx.RefillSegments(ctx, sku, qty, s.Segments)
				}
				ok, err := tx.TakeFromSegment(ctx, sku, qty, s.Segments)
				if ok || err != nil {
					return ok, err
				}
				return false, &needRefill{sku: sku}
			})
		})
		var nr *needRefill
		if !errors.As(err, &nr) {
			if err != nil {
				return nil, err
			}
			return o, nil
		}
		if refill == nil {
			refill = make(map[string]bool, len(skus))
		}
		refill[nr.sku] = true
	}
}
