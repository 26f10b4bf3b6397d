package orderd

import (
	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/buildinfo"
	"github.com/flashorder/flashorder/internal/metrics"
)

// instrument registers the strategy's and the lock backends' metrics on the
// server's registry, before any order is taken. The metrics were made before
// the strategy and the sweeper, which took their observers at construction.
// The lock metrics measure every Locker orderd uses: the sweeper's election
// and, under --strategy lock, the orders' locks.
func (m *Main) instrument() error {
	reg := m.server.Registry()
	if err := metrics.RegisterBuildInfo(reg, buildinfo.Read()); err != nil {
		return err
	}
	if err := m.lockMetrics.Register(reg); err != nil {
		return err
	}
	if m.gate != nil {
		if err := metrics.RegisterGate(reg, m.gate.Hits); err != nil {
			return err
		}
	}
	if m.registerStrategyMetrics != nil {
		return m.registerStrategyMetrics(reg)
	}
	return nil
}

// measureLocker wraps locker so that its wait and hold times and lost locks
// show on /metrics under the backend named by --lock.
func (m *Main) measureLocker(locker flashorder.Locker) flashorder.Locker {
	return m.lockMetrics.Wrap(locker, scheme(m.Config.Lock))
}
