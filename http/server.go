// Package http is flashorder's HTTP API v1 on Gin, and a Go client for it.
// Import it as orderhttp.
package http

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flashorder/flashorder"
)

// DefaultOrderTimeout is orderd's default OrderTimeout: shorter than the
// server's write timeout, so that a stuck request gets an answer.
const DefaultOrderTimeout = 10 * time.Second

// MaxBodyBytes is the largest request body the API reads.
const MaxBodyBytes = 65536

// Server timeouts: a client cannot hold a connection open by sending slowly.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 120 * time.Second
)

var ginModeOnce sync.Once

// Config is what a Server serves with. Store, Orders and AdminToken are
// required; the zero value of every other field is its default.
type Config struct {
	// Store reads products and orders, and answers the admin endpoints.
	Store flashorder.Store
	// Orders places orders, each Idempotency-Key's at most once
	// (checkout.Idempotent in front of a strategy).
	Orders OrderTaker
	// AdminToken guards the admin endpoints.
	AdminToken string

	// Logger receives errors and request logs; nil is slog.Default().
	Logger *slog.Logger
	// Lifecycle pays and cancels orders. nil: the pay and cancel endpoints
	// answer 404.
	Lifecycle flashorder.OrderLifecycle
	// PaymentWebhookSecret is the HMAC key of the payment webhook. Empty
	// disables the webhook: 404.
	PaymentWebhookSecret string
	// MaxInflight bounds the order requests in flight; beyond it POST
	// /api/v1/orders answers 503 overloaded at once. 0 means no bound
	// (orderd sets DefaultMaxInflight).
	MaxInflight int
	// OrderTimeout bounds the time an order request spends in the
	// backends; past it the request answers 503 unavailable. 0 means no
	// bound (orderd sets DefaultOrderTimeout).
	OrderTimeout time.Duration
	// Authenticator, when set (auth jwt), checks the users' bearer tokens
	// on the order endpoints: see authenticate. nil is auth none: the
	// body's or query's user_id is the user.
	Authenticator flashorder.Authenticator
	// BodyTimeout, when positive, bounds the time an order request's body
	// may take to arrive; past it the request answers 400 "request body not
	// received in time". 0 leaves it to ReadTimeout.
	BodyTimeout time.Duration
	// RateLimiter, when set, limits the orders of each user (429
	// rate_limited).
	RateLimiter flashorder.RateLimiter
	// Products, when set, serves the product page instead of Store (a
	// cache: checkout.ProductCache).
	Products ProductReader
	// IPLimit, when set, limits the joins and orders of each client IP
	// (429 rate_limited); an order with an admission token counts only if
	// the token admits it to nothing.
	IPLimit *IPLimiter
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client (for the challenge's remoteip; IPLimit has its own).
	TrustedProxies TrustedProxies
	// Challenge, when set, checks a bot challenge's token on every join of
	// the waiting room (403 challenge_failed).
	Challenge *ChallengeVerifier
	// Room, when set, is the waiting room: the queue endpoints and the
	// admission check of orders for products sold through one.
	Room WaitingRoom
	// Now is the server's clock, shown as the product page's server_time
	// and counted from for Retry-After; nil is time.Now. It should be the
	// clock the strategy stamps orders with.
	Now flashorder.Clock
}

// ProductReader reads one product; flashorder.Store is one.
type ProductReader interface {
	Product(ctx context.Context, sku string) (*flashorder.Product, error)
}

// OrderTaker places an order request: the order, or the error (a refusal or
// a failure), and whether the answer replays an earlier request's under the
// same Idempotency-Key. checkout.Idempotent is one.
type OrderTaker interface {
	Place(ctx context.Context, req *flashorder.PlaceOrderRequest) (order *flashorder.Order, replayed bool, err error)
}

// Server serves the API over HTTP.
type Server struct {
	cfg Config

	inflight   atomic.Int64
	rateWarnAt atomic.Int64

	checks   []readyCheck
	registry *prometheus.Registry
	metrics  *httpMetrics
	ids      *requestIDs
	router   *gin.Engine
	server   *http.Server
	ln       net.Listener
}

type readyCheck struct {
	name  string
	check func(context.Context) error
	// info, instead of check, also returns a value that /readyz shows
	// under "info".
	info func(context.Context) (string, error)
}

// NewServer returns a server for cfg. It panics when a required field of cfg
// is missing: a programming error, not a runtime one.
func NewServer(cfg Config) *Server {
	if cfg.Store == nil || cfg.Orders == nil || cfg.AdminToken == "" {
		panic("http: NewServer needs Config.Store, Config.Orders and Config.AdminToken")
	}
	ginModeOnce.Do(func() { gin.SetMode(gin.ReleaseMode) })
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Products == nil {
		cfg.Products = cfg.Store
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:      cfg,
		registry: prometheus.NewRegistry(),
		ids:      newRequestIDs(),
	}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = newHTTPMetrics(s.registry)
	s.AddReadyCheck("db", cfg.Store.Ping)
	s.router = s.routes()
	s.server = &http.Server{
		Handler:           s.router,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxBodyBytes,
	}
	return s
}

// now returns the server's clock.
func (s *Server) now() time.Time { return s.cfg.Now() }

// AddReadyInfo adds a check whose value /readyz also shows, under
// "info": {name: value} (say, which database server orderd writes to); an
// error fails the check like AddReadyCheck's.
func (s *Server) AddReadyInfo(name string, info func(context.Context) (string, error)) {
	s.checks = append(s.checks, readyCheck{name: name, info: info})
}

// AddReadyCheck adds a backend that /readyz checks under name. Add checks
// before Open.
func (s *Server) AddReadyCheck(name string, check func(context.Context) error) {
	s.checks = append(s.checks, readyCheck{name: name, check: check})
}

// Registry returns the Prometheus registry that /metrics serves, for other
// packages to register their collectors.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Handler returns the API as an http.Handler.
func (s *Server) Handler() http.Handler { return s.router }

// Open starts serving on addr (":0" picks a free port) in the background.
func (s *Server) Open(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.server.ErrorLog = slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn)
	go func() {
		if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// Addr returns the address the server listens on, once Open returned.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns the server's base URL on the loopback interface.
func (s *Server) URL() string {
	port := s.ln.Addr().(*net.TCPAddr).Port
	return "http://" + net.JoinHostPort("127.0.0.1", itoa(port))
}

// Close stops accepting connections and waits, until ctx ends, for in-flight
// requests to finish.
func (s *Server) Close(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	return s.server.Shutdown(ctx)
}

func (s *Server) routes() *gin.Engine {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// The metrics run outside the recovery, so that a panic is counted as
	// the 500 that the recovery answers.
	r.Use(s.requestID, s.metrics.middleware)
	r.Use(gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		s.cfg.Logger.Error("panic serving request", "method", c.Request.Method, "path", c.Request.URL.Path,
			"request_id", RequestID(c.Request.Context()), "panic", err)
		s.writeError(c, flashorder.Errorf(flashorder.EINTERNAL, "internal error"))
	}))
	r.Use(s.limitBody)
	r.NoRoute(func(c *gin.Context) { s.writeError(c, flashorder.Errorf(flashorder.ENOTFOUND, "no such route")) })
	r.NoMethod(func(c *gin.Context) {
		method := c.Request.Method
		if !slices.Contains(standardMethods, method) {
			method = "this method" // a made-up one may be long: not echoed
		}
		s.writeError(c, flashorder.Errorf(flashorder.EMETHODNOTALLOWED, "%s is not allowed here", method))
	})

	healthy := []byte(`{"status":"ok"}`)
	get(r, "/healthz", func(c *gin.Context) { writeBody(c, http.StatusOK, healthy) })
	get(r, "/readyz", s.readyz)
	get(r, "/metrics", gin.WrapH(promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})))
	get(r, "/openapi.json", serveOpenAPI)

	v1 := r.Group("/api/v1")
	get(v1, "/products/:sku", s.getProduct)
	v1.PUT("/products/:sku", s.requireAdmin, s.putProduct)
	v1.POST("/orders", s.authenticate, s.limitOrderIP, s.readOrderBody, s.shed, s.createOrder)
	get(v1, "/orders", s.authenticate, s.listOrders)
	get(v1, "/orders/:id", s.authenticate, s.getOrder)
	get(v1, "/admin/audit", s.requireAdmin, s.audit)
	s.lifecycleRoutes(v1)
	s.eventsRoutes(v1)
	s.queueRoutes(v1)
	s.metrics.cacheRoutes(r.Routes())
	return r
}

// get registers a GET route and its HEAD twin, which answers the same
// status and headers without the body (RFC 9110: HEAD is GET without the
// content; net/http drops the body).
func get(r gin.IRoutes, path string, handlers ...gin.HandlerFunc) {
	r.GET(path, handlers...)
	r.HEAD(path, handlers...)
}

func (s *Server) readyz(c *gin.Context) {
	checks := make(map[string]string, len(s.checks))
	var info map[string]string
	status, code := "ok", http.StatusOK
	for _, rc := range s.checks {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		var err error
		if rc.info != nil {
			var v string
			if v, err = rc.info(ctx); err == nil {
				if info == nil {
					info = map[string]string{}
				}
				info[rc.name] = v
			}
		} else {
			err = rc.check(ctx)
		}
		cancel()
		if err != nil {
			s.cfg.Logger.Warn("readiness check failed", "backend", rc.name, "err", err)
			checks[rc.name] = "unavailable"
			status, code = "unavailable", http.StatusServiceUnavailable
			continue
		}
		checks[rc.name] = "ok"
	}
	body := gin.H{"status": status, "checks": checks}
	if info != nil {
		body["info"] = info
	}
	s.writeJSON(c, code, body)
}
