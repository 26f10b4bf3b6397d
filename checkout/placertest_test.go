package checkout_test

import (
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/inmem"
)

// TestPlacerConformance runs the placer conformance suite for every strategy
// on every database.
func TestPlacerConformance(t *testing.T) {
	t.Run("row", func(t *testing.T) {
		placertest.Run(t, func(t *testing.T, store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer {
			r := checkout.NewRow(store)
			r.Now = now
			return r
		}, placertest.Options{})
	})
	t.Run("lock", func(t *testing.T) {
		// One in-process Locker for every instance: it plays the
		// distributed lock service that instances of one deployment share.
		locker := inmem.NewLocker()
		t.Cleanup(func() { locker.Close() })
		placertest.Run(t, func(t *testing.T, store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer {
			return checkout.NewLockStrategy(store, locker, checkout.LockStrategyOptions{Now: now})
		}, placertest.Options{})
	})
	t.Run("segment", func(t *testing.T) {
		placertest.Run(t, func(t *testing.T, store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer {
			s := checkout.NewSegment(store)
			s.Now = now
			return s
		}, placertest.Options{})
	})
	t.Run("batch", func(t *testing.T) {
		placertest.Run(t, func(t *testing.T, store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer {
			return checkout.NewBatch(store, checkout.BatchOptions{Now: now})
		}, placertest.Options{})
	})
}
