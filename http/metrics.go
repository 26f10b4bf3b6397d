package http

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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
	// ordersRefused and the idempotency hits are resolved once, by error
	// code and by result, so that counting takes no label lookup.
	ordersRefused  map[string]prometheus.Counter
	hitsReplayed   prometheus.Counter
	hitsKeyReused  prometheus.Counter
	hitsInProgress prometheus.Counter

	// routes holds the label children of every route the server knows,
	// filled in by cacheRoutes before the first request and only read
	// after: a request finds its counters without WithLabelValues.
	routes map[routeKey]*routeMetrics
}

// errorCodes are the label values of flashorder_orders_refused_total.
var errorCodes = []string{
	flashorder.EINVALID, flashorder.EBODYTOOLARGE, flashorder.EUNSUPPORTEDMEDIA, flashorder.EUNAUTHORIZED, flashorder.EFORBIDDEN,
	flashorder.ENOTFOUND, flashorder.EMETHODNOTALLOWED, flashorder.ESOLDOUT, flashorder.ENOTSTARTED, flashorder.ESALEENDED, flashorder.ELIMITEXCEEDED,
	flashorder.EUNKNOWNPRODUCT, flashorder.EINPROGRESS, flashorder.EKEYREUSED, flashorder.EINVALIDSTATE,
	flashorder.ERATELIMITED, flashorder.EOVERLOADED, flashorder.EUNAVAILABLE, flashorder.EINTERNAL,
	flashorder.EADMISSIONREQUIRED, flashorder.EADMISSIONUSED,
}

// decimals holds the decimal form of small numbers (HTTP statuses, body
// lengths), so that labelling a request or setting Content-Length formats
// no number.
var decimals = func() (d [2048]string) {
	for i := range d {
		d[i] = strconv.Itoa(i)
	}
	return d
}()

// decimal returns n in decimal.
func decimal(n int) string {
	if n >= 0 && n < len(decimals) {
		return decimals[n]
	}
	return strconv.Itoa(n)
}

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
		ordersRefused: map[string]prometheus.Counter{},
		routes:        map[routeKey]*routeMetrics{},
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flashorder_orders_refused_total",
		Help: "Order requests answered with an error (replays not counted), by error code; overloaded includes the requests shed beyond MaxInflight.",
	}, []string{"code"})
	for _, code := range errorCodes {
		m.ordersRefused[code] = refused.WithLabelValues(code)
	}
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flashorder_idempotency_hits_total",
		Help: "Order requests whose Idempotency-Key was seen before, by result: replayed, key_reused or in_progress.",
	}, []string{"result"})
	m.hitsReplayed = hits.WithLabelValues("replayed")
	m.hitsKeyReused = hits.WithLabelValues("key_reused")
	m.hitsInProgress = hits.WithLabelValues("in_progress")
	reg.MustRegister(m.requests, m.duration, m.ordersCreated, m.ordersReplayed, refused, hits)
	return m
}

// otherMethod is the method label of every request whose method is not a
// standard one.
const otherMethod = "other"

// standardMethods are the methods labelled as themselves.
var standardMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace}

// routeKey names a route pattern and method: the labels of its series.
type routeKey struct{ route, method string }

// routeMetrics holds one route's label children. They are created on first
// use, as WithLabelValues would create them, so that /metrics shows the
// same series as without the cache.
type routeMetrics struct {
	routeKey
	// order marks POST /api/v1/orders, whose outcomes are counted too.
	order bool

	durationOnce sync.Once
	duration     prometheus.Observer

	mu    sync.Mutex                    // serialises additions to codes
	codes atomic.Pointer[[]codeCounter] // copy on write
}

// codeCounter is the requests counter of one status.
type codeCounter struct {
	status  int
	counter prometheus.Counter
}

// cacheRoutes prepares the label children of routes and of unmatched
// requests with a standard method. Call it before serving.
func (m *httpMetrics) cacheRoutes(routes gin.RoutesInfo) {
	add := func(route, method string) {
		k := routeKey{route, method}
		m.routes[k] = &routeMetrics{routeKey: k, order: route == "/api/v1/orders" && method == http.MethodPost}
	}
	for _, r := range routes {
		add(r.Path, r.Method)
	}
	for _, method := range standardMethods {
		add("unmatched", method)
	}
}

// counter returns the requests counter of status on route r.
func (r *routeMetrics) counter(vec *prometheus.CounterVec, status int) prometheus.Counter {
	if p := r.codes.Load(); p != nil {
		for _, cc := range *p {
			if cc.status == status {
				return cc.counter
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var codes []codeCounter
	if p := r.codes.Load(); p != nil {
		codes = *p
		for _, cc := range codes {
			if cc.status == status {
				return cc.counter
			}
		}
	}
	cc := codeCounter{status, vec.WithLabelValues(r.route, r.method, statusLabel(status))}
	codes = append(slices.Clip(codes), cc)
	r.codes.Store(&codes)
	return cc.counter
}

// observer returns the duration histogram of route r.
func (r *routeMetrics) observer(vec *prometheus.HistogramVec) prometheus.Observer {
	r.durationOnce.Do(func() { r.duration = vec.WithLabelValues(r.route, r.method) })
	return r.duration
}

// statusLabel is the code label of an HTTP status.
func statusLabel(status int) string {
	if status >= 0 && status < 600 {
		return decimals[status]
	}
	return "other"
}

// middleware counts and times every request, and counts the outcome of
// every order request, those refused before the handler (shed, body too
// large) included. It runs outside the panic recovery, so that a panic
// counts as the 500 it is answered with.
func (m *httpMetrics) middleware(c *gin.Context) {
	start := info(c).start // requestID's: one clock read per request
	if start.IsZero() {
		start = time.Now()
	}
	c.Next()
	route := routeOf(c)
	status := c.Writer.Status()
	r := m.routes[routeKey{route, c.Request.Method}]
	if r == nil {
		// A method outside the standard ones: a client may send any
		// token as a method, so it is labelled "other", never as sent,
		// lest made-up methods grow /metrics without bound.
		m.requests.WithLabelValues(route, otherMethod, statusLabel(status)).Inc()
		m.duration.WithLabelValues(route, otherMethod).Observe(time.Since(start).Seconds())
		return
	}
	r.counter(m.requests, status).Inc()
	r.observer(m.duration).Observe(time.Since(start).Seconds())
	if r.order {
		m.countOrder(c)
	}
}

// countOrder counts the outcome of one POST /api/v1/orders once it is
// answered: the one place where order outcomes are counted.
func (m *httpMetrics) countOrder(c *gin.Context) {
	if len(c.Writer.Header()[ReplayedHeader]) > 0 {
		m.ordersReplayed.Inc()
		m.hitsReplayed.Inc()
		return
	}
	code := info(c).code
	switch {
	case code == "" && c.Writer.Status() < 300:
		m.ordersCreated.Inc()
		return
	case code == flashorder.EKEYREUSED:
		m.hitsKeyReused.Inc()
	case code == flashorder.EINPROGRESS:
		m.hitsInProgress.Inc()
	}
	refused, ok := m.ordersRefused[code]
	if !ok {
		refused = m.ordersRefused[flashorder.EINTERNAL]
	}
	refused.Inc()
}

func itoa(i int) string { return strconv.Itoa(i) }
