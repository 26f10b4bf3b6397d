package orderd

import (
	"errors"

	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/internal/metrics"
)

// newLifecycle returns the lifecycle behind the pay and cancel endpoints and
// the expiry sweeper.
func (m *Main) newLifecycle() (*checkout.Lifecycle, error) {
	cfg := &m.Config
	if cfg.PaymentTimeout <= 0 || cfg.SweepInterval <= 0 || cfg.SweepBatch <= 0 {
		return nil, errors.New("--payment-timeout, --sweep-interval and --sweep-batch must be positive")
	}
	lc := checkout.NewLifecycle(m.db)
	lc.PaymentTimeout = cfg.PaymentTimeout
	return lc, nil
}

// startSweeper starts expiring the orders of lc that were not paid in time,
// on the instance elected through the lock backend, so that one instance
// sweeps at a time.
func (m *Main) startSweeper(lc *checkout.Lifecycle) error {
	cfg := &m.Config
	// The sweeper is elected through the --lock backend: with zk://,
	// etcd:// or redis:// one instance of all that share it sweeps; with
	// memory the election is within this process, so every orderd on the
	// database sweeps (harmless: an order expires once, by a conditional
	// update).
	locker := m.SweeperLocker
	if locker == nil {
		locker = m.lock.locker
	}
	sm := metrics.NewSweeperMetrics()
	if err := sm.Register(m.server.Registry()); err != nil {
		return err
	}
	m.sweeper = checkout.NewSweeper(lc, m.measureLocker(locker), sm.Options(checkout.SweeperOptions{
		Interval: cfg.SweepInterval, Batch: cfg.SweepBatch, Logger: m.Logger}))
	m.sweeper.Start()
	return nil
}

// stopSweeper stops the sweeper: it steps down and unlocks, before Close
// closes the lock backend.
func (m *Main) stopSweeper() error {
	if m.sweeper != nil {
		m.sweeper.Stop()
	}
	return nil
}
