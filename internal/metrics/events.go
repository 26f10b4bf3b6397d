package metrics

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder/relay"
)

// RelayMetrics are the events relay's metrics: flashorder_events_published_total,
// flashorder_events_publish_failures_total (failed attempts),
// flashorder_events_dead_letters_total, flashorder_events_publish_lag_seconds
// (a histogram of the time from an event's commit to the sink's
// acknowledgement), flashorder_events_relay_leader (1
// while this instance relays), and, from the leader's last look at the
// outbox, flashorder_events_backlog (pending events) and
// flashorder_events_oldest_pending_seconds (age of the oldest, read at
// scrape time; 0 when none is pending or this instance does not lead).
// Options gives the relay the callbacks that feed them.
type RelayMetrics struct {
	published, failures, dead prometheus.Counter
	leader, backlog           prometheus.Gauge
	lag                       prometheus.Histogram
	oldestAge                 prometheus.GaugeFunc

	mu     sync.Mutex
	oldest time.Time // zero: none pending, or not leading
}

// NewRelayMetrics returns the relay's metrics, not yet registered.
func NewRelayMetrics() *RelayMetrics {
	m := &RelayMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashorder_events_published_total",
			Help: "Order events this instance's relay delivered to the sink.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashorder_events_publish_failures_total",
			Help: "Failed attempts of this instance's relay to deliver an order event (retried with backoff).",
		}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashorder_events_dead_letters_total",
			Help: "Order events this instance's relay gave up on after --events-max-attempts (replay them through the admin API).",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flashorder_events_publish_lag_seconds",
			Help:    "Time from an order event's commit to the sink's acknowledgement, per delivered event, measured from the event's time (an order's creation: when orderd took the request).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flashorder_events_relay_leader",
			Help: "1 while this instance is the elected events relay, else 0.",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flashorder_events_backlog",
			Help: "Order events in the outbox not yet delivered, as the leading relay last read them (0 on the other instances).",
		}),
	}
	m.oldestAge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flashorder_events_oldest_pending_seconds",
		Help: "Age of the oldest order event not yet delivered, as the leading relay last read the outbox (0 when none, or on the other instances).",
	}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.oldest.IsZero() {
			return 0
		}
		return max(0, time.Since(m.oldest).Seconds())
	})
	return m
}

// Options returns opts with the callbacks that feed the metrics, for
// relay.New.
func (m *RelayMetrics) Options(opts relay.Options) relay.Options {
	opts.OnPublished = m.published.Inc
	opts.OnFailure = m.failures.Inc
	opts.OnDead = m.dead.Inc
	opts.OnLag = func(d time.Duration) { m.lag.Observe(d.Seconds()) }
	opts.OnLeader = func(leading bool) {
		if leading {
			m.leader.Set(1)
			return
		}
		m.leader.Set(0)
		m.setBacklog(0, time.Time{})
	}
	opts.OnBacklog = m.setBacklog
	return opts
}

func (m *RelayMetrics) setBacklog(rows int64, oldest time.Time) {
	m.backlog.Set(float64(rows))
	m.mu.Lock()
	m.oldest = oldest
	m.mu.Unlock()
}

// Register registers the metrics on reg.
func (m *RelayMetrics) Register(reg prometheus.Registerer) error {
	if err := register(reg, m.published, m.failures, m.dead, m.lag, m.leader, m.backlog, m.oldestAge); err != nil {
		return fmt.Errorf("metrics: events relay: %w", err)
	}
	return nil
}
