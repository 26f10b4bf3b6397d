package orderd

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/metrics"
)

// newLifecycle returns the lifecycle behind the pay and cancel endpoints and
// the expiry sweeper: unpaid orders on db expire after paymentTimeout.
func newLifecycle(db *gormdb.DB, paymentTimeout time.Duration) *checkout.Lifecycle {
	lc := checkout.NewLifecycle(db)
	lc.PaymentTimeout = paymentTimeout
	return lc
}

// startSweeper starts expiring the orders of lc that were not paid in time,
// on the instance elected through locker, so that one instance sweeps at a
// time; its metrics go to reg.
//
// The sweeper is elected through the --lock backend (unless
// Main.SweeperLocker is set): with zk://, etcd:// or redis:// one instance of
// all that share it sweeps; with memory the election is within this process,
// so every orderd on the database sweeps (harmless: an order expires once, by
// a conditional update).
func (m *Main) startSweeper(lc *checkout.Lifecycle, locker flashorder.Locker, reg prometheus.Registerer) (*checkout.Sweeper, error) {
	sm := metrics.NewSweeperMetrics()
	if err := sm.Register(reg); err != nil {
		return nil, err
	}
	s := checkout.NewSweeper(lc, locker, sm.Options(checkout.SweeperOptions{
		Interval: m.Config.SweepInterval, Batch: m.Config.SweepBatch, Logger: m.Logger}))
	s.Start()
	return s, nil
}
