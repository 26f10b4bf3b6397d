package metrics

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder"
)

// LockMetrics are the lock metrics of every backend, labelled by backend name:
// flashorder_lock_wait_seconds (histogram of Lock calls that succeeded),
// flashorder_lock_hold_seconds (histogram from Lock's return to Unlock or
// loss), flashorder_lock_errors_total (Lock calls that failed, a caller
// giving up included) and flashorder_locks_lost_total (locks lost before
// their holder released them). Wrap a Locker to feed them.
type LockMetrics struct {
	wait   *prometheus.HistogramVec
	hold   *prometheus.HistogramVec
	errors *prometheus.CounterVec
	lost   *prometheus.CounterVec
}

// NewLockMetrics returns the lock metrics, not yet registered (see
// Register): Lockers can be wrapped before the registry exists.
func NewLockMetrics() *LockMetrics {
	return &LockMetrics{
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flashorder_lock_wait_seconds",
			Help:    "Time a successful Lock call waited for the lock, by backend.",
			Buckets: DurationBuckets,
		}, []string{"backend"}),
		hold: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flashorder_lock_hold_seconds",
			Help:    "Time a lock was held, until Unlock or its loss, by backend.",
			Buckets: DurationBuckets,
		}, []string{"backend"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashorder_lock_errors_total",
			Help: "Lock calls that returned an error (a caller giving up included), by backend.",
		}, []string{"backend"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashorder_locks_lost_total",
			Help: "Locks lost (session expired, lease gone) before their holder released them, by backend.",
		}, []string{"backend"}),
	}
}

// Register registers the lock metrics on reg.
func (m *LockMetrics) Register(reg prometheus.Registerer) error {
	if err := register(reg, m.wait, m.hold, m.errors, m.lost); err != nil {
		return fmt.Errorf("metrics: locks: %w", err)
	}
	return nil
}

// Wrap returns a Locker that behaves as inner and records its timings under
// the label backend ("memory", "zk", "etcd", "redis"). Closing it closes inner.
func (m *LockMetrics) Wrap(inner flashorder.Locker, backend string) flashorder.Locker {
	return &Locker{
		inner:  inner,
		wait:   m.wait.WithLabelValues(backend),
		hold:   m.hold.WithLabelValues(backend),
		errors: m.errors.WithLabelValues(backend),
		lost:   m.lost.WithLabelValues(backend),
	}
}

var (
	_ flashorder.Locker = (*Locker)(nil)
	_ flashorder.Lock   = (*lock)(nil)
)

// Locker is a flashorder.Locker that measures another one; see
// LockMetrics.Wrap.
type Locker struct {
	inner  flashorder.Locker
	wait   prometheus.Observer
	hold   prometheus.Observer
	errors prometheus.Counter
	lost   prometheus.Counter
}

// Lock implements flashorder.Locker. Each held lock has a goroutine that waits
// for its loss, so that a lock lost and never unlocked is counted too.
func (l *Locker) Lock(ctx context.Context, key string) (flashorder.Lock, error) {
	start := time.Now()
	inner, err := l.inner.Lock(ctx, key)
	if err != nil {
		l.errors.Inc()
		return nil, err
	}
	now := time.Now()
	l.wait.Observe(now.Sub(start).Seconds())
	lk := &lock{Lock: inner, owner: l, acquired: now, released: make(chan struct{})}
	go lk.watch()
	return lk, nil
}

// Close implements flashorder.Locker.
func (l *Locker) Close() error { return l.inner.Close() }

// lock is a held lock whose end, release or loss, is recorded exactly once.
type lock struct {
	flashorder.Lock
	owner    *Locker
	acquired time.Time
	ended    atomic.Bool
	released chan struct{} // closed by the Unlock that ended the lock
}

func (lk *lock) watch() {
	select {
	case <-lk.Lock.Lost():
		lk.end(true)
	case <-lk.released:
	}
}

// end records the lock's hold time and whether it was lost, the first time
// only, and reports whether this call was the first.
func (lk *lock) end(lost bool) bool {
	if !lk.ended.CompareAndSwap(false, true) {
		return false
	}
	lk.owner.hold.Observe(time.Since(lk.acquired).Seconds())
	if lost {
		lk.owner.lost.Inc()
	}
	return true
}

// Unlock implements flashorder.Lock.
func (lk *lock) Unlock(ctx context.Context) error {
	select {
	case <-lk.Lock.Lost():
		// Lost before the holder let go: the watcher records it, or
		// this does if the watcher has not run yet.
		lk.end(true)
	default:
		if lk.end(false) {
			close(lk.released)
		}
	}
	return lk.Lock.Unlock(ctx)
}
