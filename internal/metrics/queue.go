package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder/queue"
)

// QueueMetrics are the waiting room's metrics, per queue (label queue: a
// queue id, sku:<SKU> or sale:<id>), from each admission round of this
// instance: flashorder_queue_waiting, flashorder_queue_admissions_outstanding,
// flashorder_queue_admissions_used (the store's counts, shared by every
// instance on one store), flashorder_queue_admitted_total (admissions this
// instance's rounds made), flashorder_queue_committed (units sold plus
// admissions outstanding) and flashorder_queue_bound (stock times the
// admission factor, which committed must never exceed once the sale opened),
// flashorder_queue_bound_exceeded_total (rounds that found it exceeded,
// confirmed by the next: queue.QueueState.Exceeded), and
// flashorder_queue_polls_from_memory_total (pre-queue polls this instance
// answered without the store).
type QueueMetrics struct {
	waiting, outstanding, used, committed, bound *prometheus.GaugeVec
	admitted, exceeded, memoryPolls              *prometheus.CounterVec
}

// NewQueueMetrics returns the waiting room's metrics, not yet registered.
func NewQueueMetrics() *QueueMetrics {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"queue"})
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"queue"})
	}
	return &QueueMetrics{
		waiting:     gauge("flashorder_queue_waiting", "Tickets waiting in the queue (the pre-queue included), from the last admission round."),
		outstanding: gauge("flashorder_queue_admissions_outstanding", "Admissions neither used nor expired, from the last admission round."),
		used:        gauge("flashorder_queue_admissions_used", "Admissions used by an order (made or refused), from the last admission round."),
		committed:   gauge("flashorder_queue_committed", "Units sold plus admissions outstanding, from the last admission round."),
		bound:       gauge("flashorder_queue_bound", "Stock (sold and left) times the admission factor: the bound of flashorder_queue_committed."),
		admitted:    counter("flashorder_queue_admitted_total", "Admissions made by this instance's admission rounds."),
		exceeded:    counter("flashorder_queue_bound_exceeded_total", "Admission rounds of this instance that found units sold plus admissions outstanding above the bound."),
		memoryPolls: counter("flashorder_queue_polls_from_memory_total", "Polls of pre-queue tickets this instance answered from memory, without the queue store."),
	}
}

// Register registers the metrics on reg.
func (m *QueueMetrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.waiting, m.outstanding, m.used, m.committed, m.bound, m.admitted, m.exceeded, m.memoryPolls} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Observe records one queue's state after an admission round: the
// queue.RoomOptions.Observe callback.
func (m *QueueMetrics) Observe(s queue.QueueState) {
	q := s.QueueID
	committed := float64(s.Sold) + float64(s.Outstanding)
	m.waiting.WithLabelValues(q).Set(float64(s.Waiting))
	m.outstanding.WithLabelValues(q).Set(float64(s.Outstanding))
	m.used.WithLabelValues(q).Set(float64(s.Used))
	m.committed.WithLabelValues(q).Set(committed)
	m.admitted.WithLabelValues(q).Add(float64(s.Admitted))
	m.memoryPolls.WithLabelValues(q).Add(float64(s.MemoryPolls))
	if s.Bound > 0 {
		m.bound.WithLabelValues(q).Set(s.Bound)
	}
	// Present at 0 from the first round, so that increase() sees the
	// first excess.
	exceeded := m.exceeded.WithLabelValues(q)
	if s.Exceeded {
		exceeded.Inc()
	}
}
