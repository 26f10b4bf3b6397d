package orderd

// This file is where orderd picks its backends from the flags: the strategy,
// the idempotency store, the lock service, the Redis clients and the rate
// limiter. Main.Run calls these in order.

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
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

// openStrategy returns the --strategy placer on db. A strategy with metrics
// of its own gets them at construction; instrument registers them later
// through m.registerStrategyMetrics.
func (m *Main) openStrategy(db *gormdb.DB) (flashorder.OrderPlacer, error) {
	cfg := &m.Config
	var placer flashorder.OrderPlacer
	switch cfg.Strategy {
	case "row":
		placer = checkout.NewRow(db)
	case "batch":
		if cfg.BatchMax < 1 || cfg.BatchQueue < 1 || cfg.BatchPipeline < 0 {
			return nil, fmt.Errorf("--batch-max and --batch-queue must be at least 1, --batch-pipeline at least 0")
		}
		pipeline := cfg.BatchPipeline
		if pipeline == 0 && db.Engine() == gormdb.SQLite {
			pipeline = 1 // one connection: a second transaction would only wait for it
		}
		bm := metrics.NewBatchMetrics()
		b := checkout.NewBatch(db, checkout.BatchOptions{MaxBatch: cfg.BatchMax, MaxQueue: cfg.BatchQueue,
			Pipeline: pipeline, Observe: bm.Observe})
		m.registerStrategyMetrics = func(reg prometheus.Registerer) error { return bm.Register(reg, b.QueueDepth) }
		placer = b
	case "segment":
		if cfg.Segments < 1 {
			return nil, fmt.Errorf("--segments must be at least 1")
		}
		sg := checkout.NewSegment(db)
		sg.Segments = cfg.Segments
		placer = sg
	case "lock":
		fm := metrics.NewLockStrategyMetrics()
		placer = checkout.NewLockStrategy(db, m.measureLocker(m.lock.locker), checkout.LockStrategyOptions{OnFenced: fm.Fenced})
		m.registerStrategyMetrics = fm.Register
		if cfg.Lock == "memory" && db.Engine() != gormdb.SQLite {
			m.Logger.Warn("--strategy lock with --lock memory: the lock and its fencing tokens are local to this process; "+
				"other instances on this database are not excluded, and the fence will refuse the orders of some of them (503); use zk://, etcd:// or redis://",
				"db", db.Engine())
		}
	default:
		return nil, fmt.Errorf("--strategy %q is not supported (want batch, row, segment or lock)", cfg.Strategy)
	}

	return placer, nil
}

// orderPath is what openOrders built: the order taker, the store the server
// reads and writes products through, the product page's reader, and the
// --idempotency Redis (nil when the store is in memory).
type orderPath struct {
	orders    *checkout.Idempotent
	store     flashorder.Store
	products  orderhttp.ProductReader
	idemRedis *goredis.Client
}

// openOrders builds the order path: the --strategy, the gate in front of it
// (the product cache, --product-cache-ttl, and the sold-out marks,
// --sold-out-ttl), and idempotency in front of both. The server writes
// products through the gate's store, so that a change clears what the gate
// knows of the product, here at once and, with --idempotency on Redis, in
// every instance (pub/sub and the shared sold-out marks). ctx bounds the
// subscription to other instances' product changes.
func (m *Main) openOrders(ctx context.Context, db *gormdb.DB) (orderPath, error) {
	placer, err := m.openStrategy(db)
	if err != nil {
		return orderPath{}, err
	}
	idem, idemRedis, err := m.openIdempotency()
	if err != nil {
		return orderPath{}, err
	}
	path := orderPath{store: db, products: db, idemRedis: idemRedis}
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
		placer, path.store = gate, gate.Store()
		if cfg.ProductCacheTTL > 0 {
			path.products = gate.Products()
		}
		m.gate = gate
	}
	path.orders = checkout.NewIdempotent(placer, idem, path.store, m.Logger)
	return path, nil
}

// openIdempotency returns the --idempotency store, and its Redis client when
// the store is on Redis (the sold-out memo and the rate limiter share it).
func (m *Main) openIdempotency() (flashorder.IdempotencyStore, *goredis.Client, error) {
	cfg := &m.Config
	var err error
	var idem flashorder.IdempotencyStore
	var idemRedis *goredis.Client
	switch scheme(cfg.Idempotency) {
	case "memory":
		s := inmem.NewIdempotencyStore()
		s.Retention = cfg.IdempotencyRetention
		s.MaxKeys = cfg.IdempotencyMaxKeys
		idem = s
	case "redis":
		if idemRedis, err = m.redisClient(cfg.Idempotency); err != nil {
			return nil, nil, fmt.Errorf("--idempotency: %w", err)
		}
		s := redis.NewIdempotencyStore(idemRedis)
		s.Retention = cfg.IdempotencyRetention
		s.ClaimTTL = cfg.IdempotencyClaimTTL
		s.Logger = m.Logger
		idem = s
	default:
		return nil, nil, fmt.Errorf("--idempotency %q is not supported (want memory or redis://host:port/db)", redactURL(cfg.Idempotency))
	}

	return idem, idemRedis, nil
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

// openLocker opens the lock backend named by raw:
//
//	memory
//	zk://host:port[,host:port...]/prefix[?session_timeout=10s]
//	etcd://host:port[,host:port...]/prefix[?ttl=10s]
//	redis://[user:pass@]host:port/db[?ttl=10s]
func openLocker(ctx context.Context, raw string) (*lockBackend, error) {
	if raw == "memory" {
		l := inmem.NewLocker()
		return &lockBackend{locker: l, close: l.Close}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--lock: %w", err)
	}
	q := u.Query()
	duration := func(name string) (time.Duration, error) {
		v := q.Get(name)
		q.Del(name)
		if v == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("--lock: %s=%q is not a positive duration", name, v)
		}
		return d, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lockConnectTimeout)
	defer cancel()
	switch u.Scheme {
	case "zk":
		timeout, err := duration("session_timeout")
		if err != nil {
			return nil, err
		}
		if err := noOtherParams(q); err != nil {
			return nil, err
		}
		l, err := zookeeper.NewLocker(ctx, hosts(u), zookeeper.LockerOptions{Prefix: u.Path, SessionTimeout: timeout})
		if err != nil {
			return nil, err
		}
		return &lockBackend{locker: l, ping: l.Ping, close: l.Close}, nil
	case "etcd":
		ttl, err := duration("ttl")
		if err != nil {
			return nil, err
		}
		if err := noOtherParams(q); err != nil {
			return nil, err
		}
		l, err := etcd.NewLocker(ctx, hosts(u), etcd.LockerOptions{Prefix: u.Path, TTL: ttl})
		if err != nil {
			return nil, err
		}
		return &lockBackend{locker: l, ping: l.Ping, close: l.Close}, nil
	case "redis":
		ttl, err := duration("ttl")
		if err != nil {
			return nil, err
		}
		u.RawQuery = q.Encode()
		opts, err := goredis.ParseURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("--lock: %w", err)
		}
		client := goredis.NewClient(opts)
		if err := client.Ping(ctx).Err(); err != nil {
			client.Close()
			return nil, fmt.Errorf("redis: connect to %s: %w", opts.Addr, err)
		}
		l := redis.NewLocker(client, redis.LockerOptions{TTL: ttl})
		return &lockBackend{locker: l, ping: l.Ping, close: func() error {
			l.Close()
			return client.Close()
		}}, nil
	}
	return nil, fmt.Errorf("--lock %q is not supported (want memory, zk://, etcd:// or redis://)", redactURL(raw))
}

// hosts returns the comma-separated host:port list of a URL.
func hosts(u *url.URL) []string { return strings.Split(u.Host, ",") }

func noOtherParams(q url.Values) error {
	for k := range q {
		return fmt.Errorf("--lock: unknown parameter %q", k)
	}
	return nil
}

// scheme returns the backend kind of a flag value: "memory", or a URL's scheme.
func scheme(v string) string {
	if v == "memory" {
		return v
	}
	if u, err := url.Parse(v); err == nil && u.Scheme != "" {
		return u.Scheme
	}
	return v
}

// redactURL drops the password from a URL for logs and errors.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// redisClient returns the client for rawURL, opening it on first use, so that
// every flag naming the same Redis shares one connection pool.
func (m *Main) redisClient(rawURL string) (*goredis.Client, error) {
	if c, ok := m.redisClients[rawURL]; ok {
		return c, nil
	}
	c, err := redis.OpenClient(rawURL)
	if err != nil {
		return nil, err
	}
	// Reach it now, so that a Redis that is down or misnamed stops the
	// start with a clear error instead of failing every order later.
	err = m.connect(context.Background(), "redis", rawURL, func(ctx context.Context) error { return c.Ping(ctx).Err() })
	if err != nil {
		c.Close()
		return nil, err
	}
	if m.redisClients == nil {
		m.redisClients = map[string]*goredis.Client{}
	}
	m.redisClients[rawURL] = c
	return c, nil
}

// rateLimiter returns the per-user limiter of --rate-limit-user, or nil when
// it is off. Its state lives in --rate-limit-store; by default in the
// idempotency Redis (idemRedis, when set), so that the limit holds across
// instances, else in process.
func (m *Main) rateLimiter(idemRedis *goredis.Client) (flashorder.RateLimiter, error) {
	cfg := &m.Config
	if cfg.RateLimitUser == "" {
		return nil, nil
	}
	n, period, err := parseRate(cfg.RateLimitUser)
	if err != nil {
		return nil, fmt.Errorf("--rate-limit-user: %w", err)
	}
	burst := cfg.RateLimitBurst
	if burst <= 0 {
		burst = n
	}
	store := cfg.RateLimitStore
	if store == "" {
		store = "memory"
		if idemRedis != nil {
			store = cfg.Idempotency
		}
	}
	switch scheme(store) {
	case "memory":
		return inmem.NewRateLimiter(n, period, burst, 0), nil
	case "redis":
		c, err := m.redisClient(store)
		if err != nil {
			return nil, fmt.Errorf("--rate-limit-store: %w", err)
		}
		return redis.NewRateLimiter(c, n, period, burst), nil
	default:
		return nil, fmt.Errorf("--rate-limit-store %q is not supported (want memory or redis://host:port/db)", redactURL(store))
	}
}

// parseRate parses "N/s", "N/m" or "N/h" (N >= 1).
func parseRate(v string) (int, time.Duration, error) {
	num, unit, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not N/s, N/m or N/h", v)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 {
		return 0, 0, fmt.Errorf("%q: N must be a positive integer", v)
	}
	switch unit {
	case "s":
		return n, time.Second, nil
	case "m":
		return n, time.Minute, nil
	case "h":
		return n, time.Hour, nil
	}
	return 0, 0, fmt.Errorf("%q: the period must be s, m or h", v)
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
