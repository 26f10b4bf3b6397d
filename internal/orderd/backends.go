package orderd

// This file is where orderd picks its backends from the flags: the
// database, the Redis clients, the lock service, the strategy, the
// idempotency store and the rate limiter. Each function takes what it needs
// as arguments and returns what it built; Main.Run passes one to the next.
// The configuration was validated before (Config.Validate): what is left
// here to fail is I/O.

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/etcd"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/metrics"
	"github.com/flashorder/flashorder/redis"
	"github.com/flashorder/flashorder/zookeeper"
)

// openDB opens --db and migrates its schema.
func (m *Main) openDB(ctx context.Context) (*gormdb.DB, error) {
	cfg := &m.Config
	var db *gormdb.DB
	err := m.connectWithin(ctx, "database", cfg.DB, 0, func(ctx context.Context) (err error) {
		db, err = gormdb.Open(ctx, cfg.DB, gormdb.Options{MaxConns: cfg.DBMaxConns,
			IdleTxTimeout: cfg.DBIdleTxTimeout, LockTimeout: cfg.DBLockTimeout, KeepAlive: cfg.DBKeepAlive, Events: cfg.Events != ""})
		return err
	})
	return db, err
}

// redisClients holds one client per Redis URL in use, by redisKey.
type redisClients map[string]*goredis.Client

// redisKey is the key of a Redis URL in redisClients: the same Redis named
// the same way by two flags maps to one client.
func redisKey(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.String()
	}
	return raw
}

// forStore returns the client of a flag naming memory or a Redis URL (nil
// for memory).
func (rc redisClients) forStore(raw string) *goredis.Client {
	if raw == "memory" {
		return nil
	}
	return rc[redisKey(raw)]
}

// redisURLs returns the Redis URLs the configuration uses, each once:
// --lock's (without orderd's ttl), --idempotency's and the rate limiter's
// (the waiting room opens a client of its own: startRoom).
func (c Config) redisURLs() []string {
	var urls []string
	add := func(raw string) {
		k := redisKey(raw)
		for _, u := range urls {
			if u == k {
				return
			}
		}
		urls = append(urls, k)
	}
	if l, err := parseLock(c.Lock); err == nil && l.kind == "redis" {
		add(l.redis)
	}
	if scheme(c.Idempotency) == "redis" {
		add(c.Idempotency)
	}
	if store := c.rateLimitStore(); (c.RateLimitUser != "" || c.IPRateLimit != "") && scheme(store) == "redis" {
		add(store)
	}

	return urls
}

// openRedisClients opens and reaches every Redis the configuration uses, so
// that a Redis that is down or misnamed stops the start with a clear error
// instead of failing every order later. It returns the clients it opened
// even with an error, for Close.
func (m *Main) openRedisClients(ctx context.Context) (redisClients, error) {
	clients := redisClients{}
	for _, raw := range m.Config.redisURLs() {
		c, err := redis.OpenClient(raw)
		if err != nil {
			return clients, err
		}
		clients[raw] = c
		if err := m.connect(ctx, "redis", raw, func(ctx context.Context) error { return c.Ping(ctx).Err() }); err != nil {
			return clients, err
		}
	}
	return clients, nil
}

// lockBackend is an open --lock backend: the Locker, its readiness check
// (nil for the in-process one), and what closes it.
type lockBackend struct {
	locker flashorder.Locker
	ping   func(context.Context) error
	close  func() error
}

// lockConnectTimeout bounds connecting to the lock service at start.
const lockConnectTimeout = 10 * time.Second

// openLock opens the --lock backend (see lockURL); a Redis lock uses the
// client of its URL in clients.
func (m *Main) openLock(ctx context.Context, clients redisClients) (*lockBackend, error) {
	raw := m.Config.Lock
	l, err := parseLock(raw)
	if err != nil {
		return nil, err
	}
	var b *lockBackend
	err = m.connect(ctx, "lock", raw, func(ctx context.Context) error {
		switch l.kind {
		case "memory":
			lk := inmem.NewLocker()
			b = &lockBackend{locker: lk, close: lk.Close}
		case "zk":
			lk, err := zookeeper.NewLocker(ctx, l.hosts, zookeeper.LockerOptions{Prefix: l.prefix, SessionTimeout: l.ttl})
			if err != nil {
				return err
			}
			b = &lockBackend{locker: lk, ping: lk.Ping, close: lk.Close}
		case "etcd":
			lk, err := etcd.NewLocker(ctx, l.hosts, etcd.LockerOptions{Prefix: l.prefix, TTL: l.ttl})
			if err != nil {
				return err
			}
			b = &lockBackend{locker: lk, ping: lk.Ping, close: lk.Close}
		case "redis":
			// The client is Close's to close, with the other Redis
			// clients.
			lk := redis.NewLocker(clients[l.redis], redis.LockerOptions{TTL: l.ttl})
			b = &lockBackend{locker: lk, ping: lk.Ping, close: lk.Close}
		default:
			return fmt.Errorf("--lock %q is not supported", redactURL(raw))
		}
		return nil
	})
	return b, err
}

// strategy is the --strategy placer, and what registers its own metrics
// (nil when it has none).
type strategy struct {
	placer          flashorder.OrderPlacer
	registerMetrics func(prometheus.Registerer) error
}

// openStrategy returns the --strategy placer on db; the lock strategy takes
// its locks from locker.
func (m *Main) openStrategy(db *gormdb.DB, locker flashorder.Locker) (strategy, error) {
	cfg := &m.Config
	switch cfg.Strategy {
	case "row":
		return strategy{placer: checkout.NewRow(db)}, nil
	case "batch":
		pipeline := cfg.BatchPipeline
		if pipeline == 0 && db.Engine() == gormdb.SQLite {
			pipeline = 1 // one connection: a second transaction would only wait for it
		}
		bm := metrics.NewBatchMetrics()
		b := checkout.NewBatch(db, checkout.BatchOptions{MaxBatch: cfg.BatchMax, MaxQueue: cfg.BatchQueue,
			Pipeline: pipeline, Observe: bm.Observe, ObserveRowsHeld: bm.RowsHeld})
		return strategy{placer: b, registerMetrics: func(reg prometheus.Registerer) error { return bm.Register(reg, b.QueueDepth) }}, nil
	case "segment":
		sg := checkout.NewSegment(db)
		sg.Segments = cfg.Segments
		return strategy{placer: sg}, nil
	case "lock":
		if cfg.Lock == "memory" && db.Engine() != gormdb.SQLite {
			m.Logger.Warn("--strategy lock with --lock memory: the lock and its fencing tokens are local to this process; "+
				"other instances on this database are not excluded, and the fence will refuse the orders of some of them (503); use zk://, etcd:// or redis://",
				"db", db.Engine())
		}
		fm := metrics.NewLockStrategyMetrics()
		return strategy{placer: checkout.NewLockStrategy(db, locker, checkout.LockStrategyOptions{OnFenced: fm.Fenced}),
			registerMetrics: fm.Register}, nil
	}
	return strategy{}, fmt.Errorf("--strategy %q is not supported (want batch, row, segment or lock)", cfg.Strategy)
}

// orderPath is what openOrders built: the order taker, the store the server
// reads and writes products through, the product page's reader, and the
// gate (nil when both its TTLs are 0).
type orderPath struct {
	orders   *checkout.Idempotent
	store    flashorder.Store
	products orderhttp.ProductReader
	gate     *checkout.Gate
}

// openOrders builds the order path: the gate in front of placer (the
// product cache, --product-cache-ttl, and the sold-out marks,
// --sold-out-ttl), and idempotency (idem) in front of both. The server
// writes products through the gate's store, so that a change clears what
// the gate knows of the product, here at once and, with --idempotency on
// Redis (idemRedis), in every instance (pub/sub and the shared sold-out
// marks). ctx bounds the subscription to other instances' product changes.
func (m *Main) openOrders(ctx context.Context, db *gormdb.DB, placer flashorder.OrderPlacer,
	idem flashorder.IdempotencyStore, idemRedis *goredis.Client) (orderPath, error) {
	path := orderPath{store: db, products: db}
	cfg := &m.Config
	if cfg.SoldOutTTL > 0 || cfg.ProductCacheTTL > 0 {
		gate := checkout.NewGate(placer, db)
		gate.TTL = cfg.SoldOutTTL
		gate.Products().TTL = cfg.ProductCacheTTL
		if idemRedis != nil {
			gate.Shared = redis.NewSoldOutCache(idemRedis)
			gate.Products().Changes = redis.NewProductChanges(idemRedis)
		}
		if err := gate.Products().Listen(ctx); err != nil {
			return orderPath{}, fmt.Errorf("--idempotency: listen for product changes: %w", err)
		}
		placer, path.store, path.gate = gate, gate.Store(), gate
		if cfg.ProductCacheTTL > 0 {
			path.products = gate.Products()
		}
	}
	path.orders = checkout.NewIdempotent(placer, idem, path.store, m.Logger)
	path.orders.Durable = db.WaitDurable
	return path, nil
}

// openIdempotency returns the --idempotency store: on idemRedis when it is
// set, else in memory.
func (m *Main) openIdempotency(idemRedis *goredis.Client) flashorder.IdempotencyStore {
	cfg := &m.Config
	if idemRedis == nil {
		s := inmem.NewIdempotencyStore()
		s.Retention = cfg.IdempotencyRetention
		s.MaxKeys = cfg.IdempotencyMaxKeys
		return s
	}
	s := redis.NewIdempotencyStore(idemRedis)
	s.Retention = cfg.IdempotencyRetention
	s.ClaimTTL = cfg.IdempotencyClaimTTL
	s.Logger = m.Logger
	return s
}

// rateLimitStore is where the rate limits live: --rate-limit-store, by
// default the --idempotency Redis, so that the limit holds across
// instances, else memory.
func (c Config) rateLimitStore() string {
	if c.RateLimitStore != "" {
		return c.RateLimitStore
	}
	if scheme(c.Idempotency) == "redis" {
		return c.Idempotency
	}
	return "memory"
}

// rateLimiter returns the per-user limiter of --rate-limit-user, or nil when
// it is off, on its store's client in clients.
func (m *Main) rateLimiter(clients redisClients) flashorder.RateLimiter {
	cfg := &m.Config
	if cfg.RateLimitUser == "" {
		return nil
	}
	return newRateLimiter(clients.forStore(cfg.rateLimitStore()), cfg.RateLimitUser, cfg.RateLimitBurst, "")
}

// ipLimiter returns the per-client-IP limiter of --ip-rate-limit behind
// proxies, or nil when it is off, on its store (its keys apart from the
// per-user limit's). On Redis it has a client of its own with the waiting
// room's timeouts (redis.DefaultQueueTimeout): it meets a drop's crowd of
// joins at once, and a limiter that times out lets the crowd through (it
// fails open), so the order path's short timeouts would drop the defence
// when it is needed most.
func (m *Main) ipLimiter(proxies orderhttp.TrustedProxies) (*orderhttp.IPLimiter, error) {
	cfg := &m.Config
	if cfg.IPRateLimit == "" {
		return nil, nil
	}
	var c *goredis.Client
	if store := cfg.rateLimitStore(); store != "memory" {
		var err error
		if c, err = redis.OpenClientTimeout(redisKey(store), redis.DefaultQueueTimeout); err != nil {
			return nil, err
		}
		m.ipClient = c
	}
	rl := newRateLimiter(c, cfg.IPRateLimit, cfg.IPRateLimitBurst, "flashorder:iprate:")
	if r, ok := rl.(*redis.RateLimiter); ok {
		r.Timeout = redis.DefaultQueueTimeout
	}
	l := orderhttp.NewIPLimiter(rl, proxies)
	l.Logger = m.Logger
	return l, nil
}

// newRateLimiter returns a limiter of rate (N/s, N/m or N/h, checked by
// Validate) and burst (0: the rate's N) on c, under keyPrefix ("" the
// default), or in memory when c is nil.
func newRateLimiter(c *goredis.Client, rate string, burst int, keyPrefix string) flashorder.RateLimiter {
	n, period, _ := parseRate(rate)
	if burst == 0 {
		burst = n
	}
	if c == nil {
		return inmem.NewRateLimiter(n, period, burst, 0)
	}
	rl := redis.NewRateLimiter(c, n, period, burst)
	if keyPrefix != "" {
		rl.Prefix = keyPrefix
	}
	return rl
}

// redisLogger sends go-redis's own log lines (a failed dial per request while
// Redis is down) to orderd's logger, at most one a second: orderd's Redis
// backends already report their fallbacks.
type redisLogger struct {
	logger *slog.Logger
	last   atomic.Int64
}

// Printf implements go-redis's logging interface.
func (l *redisLogger) Printf(_ context.Context, format string, v ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(time.Second) || !l.last.CompareAndSwap(last, now) {
		return
	}
	l.logger.Warn("redis client", "msg", fmt.Sprintf(format, v...))
}
