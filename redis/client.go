package redis

import (
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds every Redis call made by this package's types: a slow
// Redis must not stall orders, which fall back to the database instead.
const DefaultTimeout = 100 * time.Millisecond

// OpenClient returns a client for a redis://[user:pass@]host:port/db URL (query
// options such as pool_size or read_timeout are those of go-redis ParseURL).
// Timeouts not set in the URL default to DefaultTimeout, and failed commands
// are not retried, so that a Redis that is down costs a request about one
// timeout at most. It does not connect; use Ping to check the server.
func OpenClient(rawURL string) (*goredis.Client, error) {
	return OpenClientTimeout(rawURL, DefaultTimeout)
}

// OpenClientTimeout is OpenClient with timeout, instead of DefaultTimeout,
// for the timeouts the URL does not set: the waiting room's client
// (DefaultQueueTimeout), whose pipelines carry a crowd's scripts and have no
// database to fall back to.
func OpenClientTimeout(rawURL string, timeout time.Duration) (*goredis.Client, error) {
	opt, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: parse URL: %w", err)
	}
	if opt.DialTimeout == 0 {
		opt.DialTimeout = 2 * DefaultTimeout
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = timeout
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = timeout
	}
	if opt.PoolTimeout == 0 {
		opt.PoolTimeout = timeout
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = -1
	}
	if opt.DialerRetries == 0 {
		opt.DialerRetries = 1
	}
	opt.ContextTimeoutEnabled = true
	return goredis.NewClient(opt), nil
}
