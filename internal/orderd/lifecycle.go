package orderd

import (
	"errors"

	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/internal/metrics"
)

// startLifecycle wires payment, cancellation and expiry: the lifecycle behind
// the pay and cancel endpoints, and the expiry sweeper, elected through the
// lock backend so that one instance sweeps at a time.
func (m *Main) startLifecycle() error {
	cfg := &m.Config
	if cfg.PaymentTimeout <= 0 || cfg.SweepInterval <= 0 || cfg.SweepBatch <= 0 {
		return errors.New("--payment-timeout, --sweep-interval and --sweep-batch must be positive")
	}
	lc := checkout.NewLifecycle(m.db)
	lc.PaymentTimeout = cfg.PaymentTimeout
	m.server.Lifecycle = lc
	m.server.PaymentWebhookSecret = cfg.PaymentWebhookSecret

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

// stopLifecycle stops the sweeper: it steps down and unlocks, before Close
// closes the lock backend.
func (m *Main) stopLifecycle() error {
	if m.sweeper != nil {
		m.sweeper.Stop()
	}
	return nil
}
