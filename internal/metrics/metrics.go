// Package metrics exposes flashorder's strategies, locks and sweeper as
// Prometheus metrics. It hooks into the observation points that the other
// packages offer (checkout.BatchOptions.Observe, checkout.Sweeper's callbacks) and
// decorates a flashorder.Locker, so that those packages stay free of
// Prometheus. internal/orderd (the program behind cmd/orderd) wires it; every
// collector is registered on the registry the caller passes, never a global
// one.
package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/internal/buildinfo"
)

// BatchSizeBuckets are the histogram buckets of flashorder_batch_size: orders
// per batch transaction, up to checkout.DefaultMaxBatch.
var BatchSizeBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}

// DurationBuckets are the histogram buckets, in seconds, of the transaction
// and lock timings.
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// RowsHeldBuckets are the histogram buckets, in seconds, of
// flashorder_batch_rows_held_seconds: on one loopback the rows are held for a
// fraction of a millisecond, across a network for a few round trips.
var RowsHeldBuckets = []float64{.0001, .00025, .0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1}

// BatchMetrics are the batch strategy's metrics: flashorder_batch_size
// (histogram of orders per transaction), flashorder_batch_transaction_seconds
// (histogram), flashorder_batch_rows_held_seconds (histogram of how long a
// committed batch transaction held its product rows, from their lock to its
// commit), flashorder_batch_errors_total (failed batch transactions) and
// flashorder_batch_queue_depth (orders waiting, read at scrape time). Make
// them first, hand Observe and RowsHeld to checkout.BatchOptions (Observe and
// ObserveRowsHeld), then Register them with the strategy's queue depth.
type BatchMetrics struct {
	size, took, held prometheus.Histogram
	errs             prometheus.Counter
}

// NewBatchMetrics returns the batch strategy's metrics, not yet registered.
func NewBatchMetrics() *BatchMetrics {
	return &BatchMetrics{
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flashorder_batch_size",
			Help:    "Orders per batch transaction of the batch strategy.",
			Buckets: BatchSizeBuckets,
		}),
		took: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flashorder_batch_transaction_seconds",
			Help:    "Time of one batch transaction of the batch strategy, retries included.",
			Buckets: DurationBuckets,
		}),
		held: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flashorder_batch_rows_held_seconds",
			Help:    "Time a committed batch transaction held its product rows: from their lock to the commit's answer.",
			Buckets: RowsHeldBuckets,
		}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashorder_batch_errors_total",
			Help: "Batch transactions that failed; each answered its orders with an error.",
		}),
	}
}

// Observe records one batch transaction; it is checkout.BatchOptions.Observe.
func (m *BatchMetrics) Observe(n int, d time.Duration, err error) {
	m.size.Observe(float64(n))
	m.took.Observe(d.Seconds())
	if err != nil {
		m.errs.Inc()
	}
}

// RowsHeld records how long one committed batch transaction held its product
// rows; it is checkout.BatchOptions.ObserveRowsHeld.
func (m *BatchMetrics) RowsHeld(d time.Duration) { m.held.Observe(d.Seconds()) }

// Register registers the metrics on reg, with depth read at scrape time as
// flashorder_batch_queue_depth.
func (m *BatchMetrics) Register(reg prometheus.Registerer, depth func() int) error {
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flashorder_batch_queue_depth",
		Help: "Orders waiting in the batch strategy's queue for a batch.",
	}, func() float64 { return float64(depth()) })
	if err := register(reg, m.size, m.took, m.held, m.errs, gauge); err != nil {
		return fmt.Errorf("metrics: batch: %w", err)
	}
	return nil
}

// LockStrategyMetrics is the lock strategy's metric,
// flashorder_lock_fence_refusals_total (orders whose write the fence refused
// because their lock had gone to a newer holder). Make it first, hand Fenced
// to checkout.LockStrategyOptions.OnFenced, then Register it.
type LockStrategyMetrics struct {
	fenced prometheus.Counter
}

// NewLockStrategyMetrics returns the lock strategy's metric, not yet
// registered.
func NewLockStrategyMetrics() *LockStrategyMetrics {
	return &LockStrategyMetrics{fenced: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "flashorder_lock_fence_refusals_total",
		Help: "Orders of the lock strategy refused by the fence: their lock had gone to a newer holder (503, nothing written).",
	})}
}

// Fenced counts one refusal; it is checkout.LockStrategyOptions.OnFenced.
func (m *LockStrategyMetrics) Fenced(string) { m.fenced.Inc() }

// Register registers the metric on reg.
func (m *LockStrategyMetrics) Register(reg prometheus.Registerer) error {
	if err := register(reg, m.fenced); err != nil {
		return fmt.Errorf("metrics: lock strategy: %w", err)
	}
	return nil
}

// SweeperMetrics are the expiry sweeper's metrics:
// flashorder_orders_expired_total, flashorder_sweeper_leader (1 while this
// instance leads) and flashorder_sweeper_runs_total{result="ok"|"error"}.
// Options gives the sweeper the callbacks that feed them.
type SweeperMetrics struct {
	expired         prometheus.Counter
	leader          prometheus.Gauge
	runs            *prometheus.CounterVec
	runsOK, runsErr prometheus.Counter
}

// NewSweeperMetrics returns the sweeper's metrics, not yet registered.
func NewSweeperMetrics() *SweeperMetrics {
	m := &SweeperMetrics{
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashorder_orders_expired_total",
			Help: "Unpaid orders this instance's sweeper expired.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flashorder_sweeper_leader",
			Help: "1 while this instance is the elected expiry sweeper, else 0.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashorder_sweeper_runs_total",
			Help: "Sweeps this instance ran while leading, by result (ok or error).",
		}, []string{"result"}),
	}
	m.runsOK, m.runsErr = m.runs.WithLabelValues("ok"), m.runs.WithLabelValues("error")
	return m
}

// Options returns opts with the callbacks that feed the metrics, for
// checkout.NewSweeper.
func (m *SweeperMetrics) Options(opts checkout.SweeperOptions) checkout.SweeperOptions {
	opts.OnExpire = func(orders []*flashorder.Order) { m.expired.Add(float64(len(orders))) }
	opts.OnLeader = func(leading bool) {
		if leading {
			m.leader.Set(1)
		} else {
			m.leader.Set(0)
		}
	}
	opts.OnSweep = func(_ int, err error) {
		if err != nil {
			m.runsErr.Inc()
		} else {
			m.runsOK.Inc()
		}
	}
	return opts
}

// Register registers the metrics on reg.
func (m *SweeperMetrics) Register(reg prometheus.Registerer) error {
	if err := register(reg, m.expired, m.leader, m.runs); err != nil {
		return fmt.Errorf("metrics: sweeper: %w", err)
	}
	return nil
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// RegisterBuildInfo registers flashorder_build_info on reg: a gauge of 1
// whose labels version, revision and go_version name the running build, so
// that dashboards can show which build each instance runs and when it
// changed.
func RegisterBuildInfo(reg prometheus.Registerer, info buildinfo.Info) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "flashorder_build_info",
		Help: "Always 1; the labels name the running build (module version, VCS revision, Go version).",
		ConstLabels: prometheus.Labels{"version": info.Version, "revision": info.Revision,
			"go_version": info.GoVersion},
	})
	g.Set(1)
	if err := register(reg, g); err != nil {
		return fmt.Errorf("metrics: build info: %w", err)
	}
	return nil
}

// RegisterGate registers flashorder_gate_refusals_total on reg: the orders
// the gate refused without the database, by reason (window: not_started or
// sale_ended; sold_out: sold_out or limit_exceeded of a sold-out SKU), read
// from hits at each scrape.
func RegisterGate(reg prometheus.Registerer, hits func() (window, soldOut int64)) error {
	reasons := []struct {
		name string
		read func() float64
	}{
		{"window", func() float64 { w, _ := hits(); return float64(w) }},
		{"sold_out", func() float64 { _, s := hits(); return float64(s) }},
	}
	for _, r := range reasons {
		c := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "flashorder_gate_refusals_total",
			Help:        "Orders refused by the gate without a database round trip, by reason: window (not_started, sale_ended) or sold_out (sold_out, limit_exceeded of a sold-out SKU).",
			ConstLabels: prometheus.Labels{"reason": r.name},
		}, r.read)
		if err := register(reg, c); err != nil {
			return fmt.Errorf("metrics: gate: %w", err)
		}
	}
	return nil
}
