package orderd

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/redis"
)

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
