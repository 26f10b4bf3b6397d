package redis

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
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
	defaults(timeout, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout, &opt.DialerRetries)
	if opt.MaxRetries == 0 {
		opt.MaxRetries = -1
	}
	opt.ContextTimeoutEnabled = true
	return goredis.NewClient(opt), nil
}

// defaults fills the timeouts a URL left unset, of a single-node client's
// options or a cluster's (go-redis has no type for what they share):
// dialing 2 x DefaultTimeout, reads, writes and the pool's wait timeout,
// one dial attempt.
func defaults(timeout time.Duration, dial, read, write, pool *time.Duration, dialerRetries *int) {
	if *dial == 0 {
		*dial = 2 * DefaultTimeout
	}
	for _, d := range []*time.Duration{read, write, pool} {
		if *d == 0 {
			*d = timeout
		}
	}
	if *dialerRetries == 0 {
		*dialerRetries = 1
	}
}

// Cluster URL schemes: OpenUniversalClient takes a Redis Cluster as
//
//	redis+cluster://[user:pass@]host:port[,host:port...][/][?options]
//
// (rediss+cluster:// with TLS): the hosts are seed nodes (the client learns
// the others from CLUSTER SLOTS), there is no database number (a cluster
// has only database 0: the path is empty, / or /0), and the options are
// those of go-redis ParseClusterURL (read_timeout, pool_size, max_redirects
// and so on).
const (
	ClusterScheme    = "redis+cluster"
	ClusterTLSScheme = "rediss+cluster"
)

// IsClusterURL reports whether rawURL names a Redis Cluster
// (redis+cluster:// or rediss+cluster://).
func IsClusterURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && (u.Scheme == ClusterScheme || u.Scheme == ClusterTLSScheme)
}

// DefaultMaxRedirects is how many MOVED or ASK redirects (and network
// errors) a cluster client follows for one command before it gives up:
// enough for a slot that moves while a call is under way, bounded all the
// same by the call's context.
const DefaultMaxRedirects = 3

// OpenUniversalClient returns a client for a redis:// URL (as
// OpenClientTimeout) or, for a redis+cluster:// URL (see ClusterScheme), a
// *goredis.ClusterClient with the same defaults: timeouts not set in the URL
// are timeout (dialing 2 x DefaultTimeout), one dial attempt, and no retry
// but the cluster's redirects (DefaultMaxRedirects, or max_redirects in the
// URL). It does not connect.
func OpenUniversalClient(rawURL string, timeout time.Duration) (goredis.UniversalClient, error) {
	if !IsClusterURL(rawURL) {
		return OpenClientTimeout(rawURL, timeout)
	}
	opt, err := ParseClusterURL(rawURL)
	if err != nil {
		return nil, err
	}
	defaults(timeout, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout, &opt.DialerRetries)
	if opt.MaxRedirects == 0 {
		opt.MaxRedirects = DefaultMaxRedirects
	}
	opt.ContextTimeoutEnabled = true
	return goredis.NewClusterClient(opt), nil
}

// ParseClusterURL parses a redis+cluster:// URL (see ClusterScheme) into
// go-redis cluster options, without defaults; its errors leave the URL out,
// which may hold a password.
func ParseClusterURL(rawURL string) (*goredis.ClusterOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("redis: cluster URL: not a URL")
	}
	v := *u
	switch u.Scheme {
	case ClusterScheme:
		v.Scheme = "redis"
	case ClusterTLSScheme:
		v.Scheme = "rediss"
	default:
		return nil, fmt.Errorf("redis: cluster URL: scheme %q, want %s:// or %s://", u.Scheme, ClusterScheme, ClusterTLSScheme)
	}
	switch u.Path {
	case "", "/", "/0":
	default:
		return nil, fmt.Errorf("redis: cluster URL: path %q: a cluster has only database 0", u.Path)
	}
	hosts := strings.Split(u.Host, ",")
	for _, h := range hosts {
		if host, port, err := net.SplitHostPort(h); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("redis: cluster URL: %q is not host:port", h)
		}
	}
	q := u.Query()
	if q.Has("addr") {
		return nil, errors.New("redis: cluster URL: list the nodes as host:port,host:port, not addr=")
	}
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	v.Host, v.Path, v.RawQuery = hosts[0], "", q.Encode()
	opt, err := goredis.ParseClusterURL(v.String())
	if err != nil {
		return nil, fmt.Errorf("redis: cluster URL: %w", err)
	}
	return opt, nil
}
