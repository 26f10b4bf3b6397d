package http

import (
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder"
)

// httpMetrics counts requests by route and status and times them, and counts
// order outcomes.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	ordersCreated  prometheus.Counter
	ordersReplayed prometheus.Counter
	// ordersRefused and idempotencyHits are resolved once, by error code
	// and by result, so that counting takes no label lookup.
	ordersRefused   map[string]prometheus.Counter
	idempotencyHits map[string]prometheus.Counter
}

// errorCodes are the label values of flashorder_orders_refused_total.
var errorCodes = []string{
	flashorder.EINVALID, flashorder.EBODYTOOLARGE, flashorder.EUNSUPPORTEDMEDIA, flashorder.EUNAUTHORIZED,
	flashorder.ENOTFOUND, flashorder.EMETHODNOTALLOWED, flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED,
	flashorder.EUNKNOWNPRODUCT, flashorder.EINPROGRESS, flashorder.EKEYREUSED, flashorder.EINVALIDSTATE,
	flashorder.ERATELIMITED, flashorder.EOVERLOADED, flashorder.EUNAVAILABLE, flashorder.EINTERNAL,
}

// statusLabels holds the code label of every HTTP status, so that labelling
// a request formats no number.
var statusLabels = func() (l [600]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashorder_http_requests_total",
			Help: "HTTP requests answered, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flashorder_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		ordersCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashorder_orders_created_total",
			Help: "Orders created (answered 201, replays not counted).",
		}),
		ordersReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashorder_orders_replayed_total",
			Help: "Order requests answered by replaying an earlier answer under the same Idempotency-Key.",
		}),
		ordersRefused:   map[string]prometheus.Counter{},
		idempotencyHits: map[string]prometheus.Counter{},
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flashorder_orders_refused_total",
		Help: "Order requests answered with an error (replays not counted), by error code.",
	}, []string{"code"})
	for _, code := range errorCodes {
		m.ordersRefused[code] = refused.WithLabelValues(code)
	}
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flashorder_idempotency_hits_total",
		Help: "Order requests whose Idempotency-Key was seen before, by result: replayed, key_reused or in_progress.",
	}, []string{"result"})
	for _, r := range []string{"replayed", "key_reused", "in_progress"} {
		m.idempotencyHits[r] = hits.WithLabelValues(r)
	}
	reg.MustRegister(m.requests, m.duration, m.ordersCreated, m.ordersReplayed, refused, hits)
	return m
}

func (m *httpMetrics) middleware(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := routeOf(c)
	status := c.Writer.Status()
	code := "other"
	if status >= 0 && status < len(statusLabels) {
		code = statusLabels[status]
	}
	m.requests.WithLabelValues(route, c.Request.Method, code).Inc()
	m.duration.WithLabelValues(route, c.Request.Method).Observe(time.Since(start).Seconds())
}

// countOrder counts the outcome of one POST /api/v1/orders once it is
// answered: the one place where order outcomes are counted.
func (m *httpMetrics) countOrder(c *gin.Context) {
	if c.Writer.Header().Get(ReplayedHeader) != "" {
		m.ordersReplayed.Inc()
		m.idempotencyHits["replayed"].Inc()
		return
	}
	code := info(c).code
	switch {
	case code == "" && c.Writer.Status() < 300:
		m.ordersCreated.Inc()
		return
	case code == flashorder.EKEYREUSED:
		m.idempotencyHits["key_reused"].Inc()
	case code == flashorder.EINPROGRESS:
		m.idempotencyHits["in_progress"].Inc()
	}
	refused, ok := m.ordersRefused[code]
	if !ok {
		refused = m.ordersRefused[flashorder.EINTERNAL]
	}
	refused.Inc()
}

func itoa(i int) string { return strconv.Itoa(i) }
