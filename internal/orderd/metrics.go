package orderd

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/internal/buildinfo"
	"github.com/flashorder/flashorder/internal/metrics"
)

// lockMeasure measures every Locker orderd uses (the sweeper's election
// and, under --strategy lock, the orders' locks) under the backend named by
// --lock.
type lockMeasure struct {
	metrics *metrics.LockMetrics
	backend string
}

func newLockMeasure(backend string) lockMeasure {
	return lockMeasure{metrics: metrics.NewLockMetrics(), backend: backend}
}

// wrap returns locker with its wait and hold times and lost locks measured.
func (lm lockMeasure) wrap(locker flashorder.Locker) flashorder.Locker {
	return lm.metrics.Wrap(locker, lm.backend)
}

// instrument registers on reg, before any order is taken, the build's,
// the lock backends' (locks), the gate's (nil: none) and the strategy's
// metrics (registerStrategy, nil: none). The metrics were made before the
// strategy and the sweeper, which took their observers at construction.
func instrument(reg prometheus.Registerer, locks lockMeasure, gate *checkout.Gate, registerStrategy func(prometheus.Registerer) error) error {
	if err := metrics.RegisterBuildInfo(reg, buildinfo.Read()); err != nil {
		return err
	}
	if err := locks.metrics.Register(reg); err != nil {
		return err
	}
	if gate != nil {
		if err := metrics.RegisterGate(reg, gate.Hits); err != nil {
			return err
		}
	}
	if registerStrategy != nil {
		return registerStrategy(reg)
	}
	return nil
}
