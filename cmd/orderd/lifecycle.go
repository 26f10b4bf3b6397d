package main

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
)

// startLifecycle wires payment, cancellation and expiry: the lifecycle behind
// the pay and cancel endpoints, and the expiry sweeper, elected through the
// lock backend so that one instance sweeps at a time.
func (m *Main) startLifecycle(placer flashorder.OrderPlacer) error {
	cfg := &m.Config
	if cfg.PaymentTimeout <= 0 || cfg.SweepInterval <= 0 || cfg.SweepBatch <= 0 {
		return errors.New("--payment-timeout, --sweep-interval and --sweep-batch must be positive")
	}
	// A strategy that keeps stock elsewhere than the products row returns
	// it its own way; the others use the row increment.
	stock, _ := placer.(flashorder.StockReturner)
	lc := checkout.NewLifecycle(m.db, stock)
	lc.PaymentTimeout = cfg.PaymentTimeout
	m.server.Lifecycle = lc
	m.server.PaymentWebhookSecret = cfg.PaymentWebhookSecret

	// The sweeper is elected through the --lock backend: with zk://,
	// etcd:// or redis:// one instance of all that share it sweeps; with
	// memory the election is within this process, so every orderd on the
	// database sweeps (harmless: an order expires once, by a conditional
	// update).
	locker := m.Locker
	if locker == nil {
		locker = m.lock.locker
	}
	expired := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "flashorder_orders_expired_total",
		Help: "Unpaid orders this instance's sweeper expired.",
	})
	leader := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "flashorder_sweeper_leader",
		Help: "1 while this instance is the elected expiry sweeper, else 0.",
	})
	if err := m.server.Registry().Register(expired); err != nil {
		return fmt.Errorf("register sweeper metrics: %w", err)
	}
	if err := m.server.Registry().Register(leader); err != nil {
		return fmt.Errorf("register sweeper metrics: %w", err)
	}
	m.sweeper = checkout.NewSweeper(lc, locker)
	m.sweeper.Interval = cfg.SweepInterval
	m.sweeper.Batch = cfg.SweepBatch
	m.sweeper.Logger = m.Logger
	m.sweeper.OnExpire = func(orders []*flashorder.Order) { expired.Add(float64(len(orders))) }
	m.sweeper.OnLeader = func(leading bool) {
		if leading {
			leader.Set(1)
		} else {
			leader.Set(0)
		}
	}
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
