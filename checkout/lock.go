package checkout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/failpoint"
)

var _ flashorder.OrderPlacer = (*LockStrategy)(nil)

// DefaultLockWait is how long an order waits for its locks when
// LockStrategyOptions.Wait is zero.
const DefaultLockWait = 10 * time.Second

// SKULockKey returns the lock key of a SKU.
func SKULockKey(sku string) string { return "sku/" + sku }

// LockStrategy is the `lock` strategy, the seed's design done right: lock every SKU
// of the order with the distributed Locker, in sorted order (no deadlock
// between multi-item orders), then run the `row` transaction, fenced: the
// transaction records each lock's token on its product row and fails when
// the row already carries a newer token. A holder that lost its lock (an
// expired session, a long pause) and did not notice can therefore not write
// after the next holder did: its order fails with 503 unavailable and
// changes nothing.
//
// The strategy does not poll flashorder.Lock.Lost before writing: a pause right after
// such a check would make it worthless, and the fence does not depend on
// the holder's view of time.
type LockStrategy struct {
	store  flashorder.Store
	locker flashorder.Locker
	opts   LockStrategyOptions
}

// LockStrategyOptions tunes a LockStrategy. Zero fields take their defaults.
type LockStrategyOptions struct {
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock
	// Wait bounds how long an order waits for its locks; an order that
	// waits longer fails with 503 overloaded. The default is
	// DefaultLockWait.
	Wait time.Duration
	// OnFenced, if set, is called when the fence refused an order's write
	// on sku: the lock had gone to a newer holder meanwhile.
	OnFenced func(sku string)
}

// NewLockStrategy returns the lock strategy on store and locker.
func NewLockStrategy(store flashorder.Store, locker flashorder.Locker, opts LockStrategyOptions) *LockStrategy {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultLockWait
	}
	return &LockStrategy{store: store, locker: locker, opts: opts}
}

// PlaceOrder implements flashorder.OrderPlacer.
func (s *LockStrategy) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	o, err := NewOrder(req, s.opts.Now())
	if err != nil {
		return nil, err
	}
	skus := sortedSKUs(o)
	held := make([]flashorder.Lock, 0, len(skus))
	defer func() { unlockAll(ctx, held) }()

	wctx, cancel := context.WithTimeout(ctx, s.opts.Wait)
	defer cancel()
	for _, sku := range skus {
		lk, err := s.locker.Lock(wctx, SKULockKey(sku))
		if err != nil {
			return nil, lockFailure(ctx, sku, err)
		}
		held = append(held, lk)
	}
	// Fault tests pause here: every lock held, nothing written yet.
	failpoint.Hit(ctx, "checkout/lock-held")

	err = s.store.InTx(ctx, func(tx flashorder.Tx) error {
		if err := placeInTx(ctx, tx, o, skus, takeFromRow); err != nil {
			return err
		}
		for i, sku := range skus {
			ok, err := tx.Fence(ctx, sku, held[i].Token())
			if err != nil {
				return err
			}
			if !ok {
				if s.opts.OnFenced != nil {
					s.opts.OnFenced(sku)
				}
				return flashorder.Errorf(flashorder.EUNAVAILABLE, "the lock on %q went to another order meanwhile; retry", sku)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// lockFailure turns a Locker error into the API's errors.
func lockFailure(ctx context.Context, sku string, err error) error {
	switch {
	case ctx.Err() != nil:
		return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the request ended while waiting for stock", Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &flashorder.Error{Code: flashorder.EOVERLOADED, Message: fmt.Sprintf("too many orders are waiting for %q; retry", sku), Err: err}
	}
	return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the lock service is unavailable; retry", Err: err}
}

// unlockTimeout bounds the release of an order's locks.
const unlockTimeout = 5 * time.Second

// unlockAll releases the locks in reverse order, also when the request's
// context already ended. A release that fails is the backend's to finish
// (it retries, or the session expires); a lock that was lost needs none.
func unlockAll(ctx context.Context, held []flashorder.Lock) {
	if len(held) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	for i := len(held) - 1; i >= 0; i-- {
		_ = held[i].Unlock(ctx)
	}
}
