package orderd

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/etcd"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/redis"
	"github.com/flashorder/flashorder/zookeeper"
)

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
