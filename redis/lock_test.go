package redis_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/locktest"
	"github.com/flashorder/flashorder/redis"
)

// lockTTL is short so that the fault tests take seconds.
const lockTTL = time.Second

// lockClient returns a go-redis client for the services script's Redis at
// addr (host:port), closed when the test ends.
func lockClient(t testing.TB, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

func redisAddr(t testing.TB) string {
	t.Helper()
	raw := testenv.Service(t, "FLASHORDER_TEST_REDIS_URL")
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestLocker(t *testing.T) {
	addr := redisAddr(t)
	if addr == "" {
		return
	}
	prefix := locktest.Key("flashorder-test") + ":"
	admin := lockClient(t, addr)
	probe := redis.NewLocker(admin, redis.LockerOptions{Prefix: prefix})
	newClient := func(t testing.TB, a string) flashorder.Locker {
		return redis.NewLocker(lockClient(t, a), redis.LockerOptions{TTL: lockTTL, Prefix: prefix})
	}
	locktest.Run(t, locktest.Backend{
		NewClient:   func(t testing.TB) flashorder.Locker { return newClient(t, addr) },
		Addrs:       []string{addr},
		NewClientAt: func(t testing.TB, a []string) flashorder.Locker { return newClient(t, a[0]) },
		Expiry:      lockTTL,
		Leftovers: func(t testing.TB, key string) int {
			n, err := admin.Exists(context.Background(), probe.LockKey(key)).Result()
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		},
	})
}

// TestKeyDeleted deletes a held lock's key behind the holder's back (an
// operator, or Redis losing it): the next renewal notices and Lost closes.
func TestKeyDeleted(t *testing.T) {
	addr := redisAddr(t)
	if addr == "" {
		return
	}
	c := lockClient(t, addr)
	l := redis.NewLocker(c, redis.LockerOptions{TTL: lockTTL, Prefix: locktest.Key("flashorder-test") + ":"})
	defer l.Close()
	ctx := context.Background()
	key := locktest.Key("deleted")
	lk, err := l.Lock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Del(ctx, l.LockKey(key)).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lk.Lost():
	case <-time.After(5 * lockTTL):
		t.Fatal("Lost did not close after the key was deleted")
	}
	next, err := l.Lock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if next.Token() <= lk.Token() {
		t.Fatalf("token %d after %d", next.Token(), lk.Token())
	}
	next.Unlock(ctx)
}

func BenchmarkLocker(b *testing.B) {
	addr := redisAddr(b)
	if addr == "" {
		b.Skip("no Redis")
	}
	prefix := locktest.Key("flashorder-bench") + ":"
	locktest.Bench(b, func(b testing.TB) flashorder.Locker {
		return redis.NewLocker(lockClient(b, addr), redis.LockerOptions{Prefix: prefix})
	})
}
