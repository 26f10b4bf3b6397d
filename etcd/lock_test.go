package etcd_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/etcd"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/locktest"
)

// ttl is short so that the fault tests take seconds; etcd's minimum lease is
// a second or two (it may extend a shorter one).
const ttl = 2 * time.Second

func newLocker(t testing.TB, endpoints []string, prefix string) *etcd.Locker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := etcd.NewLocker(ctx, endpoints, etcd.LockerOptions{Prefix: prefix, TTL: ttl})
	if err != nil {
		t.Fatalf("new locker: %v", err)
	}
	return l
}

func testPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "/flashorder-test/" + hex.EncodeToString(b) + "/"
}

func admin(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Connect now, so that the suite's goroutine-leak check counts the
	// client's goroutines as already there.
	if _, err := c.Get(context.Background(), "/"); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLocker(t *testing.T) {
	endpoints := testenv.EtcdEndpoints(t)
	prefix := testPrefix()
	probe := newLocker(t, endpoints, prefix)
	t.Cleanup(func() { probe.Close() })
	c := admin(t, endpoints)
	locktest.Run(t, locktest.Backend{
		NewClient:   func(t testing.TB) flashorder.Locker { return newLocker(t, endpoints, prefix) },
		Addrs:       endpoints,
		NewClientAt: func(t testing.TB, a []string) flashorder.Locker { return newLocker(t, a, prefix) },
		Expiry:      ttl,
		FIFO:        true,
		Leftovers: func(t testing.TB, key string) int {
			resp, err := c.Get(context.Background(), probe.KeyPrefix(key)+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatalf("count keys: %v", err)
			}
			return int(resp.Count)
		},
	})
}

// TestLeaseRevoked revokes a holder's lease from another client, as an
// operator (or etcd after a long pause) would: the holder's Lost closes,
// the next holder gets a newer token, and the Locker starts a new session.
func TestLeaseRevoked(t *testing.T) {
	endpoints := testenv.EtcdEndpoints(t)
	prefix := testPrefix()
	l := newLocker(t, endpoints, prefix)
	defer l.Close()
	c := admin(t, endpoints)
	ctx := context.Background()
	key := locktest.Key("revoke")
	lk, err := l.Lock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, l.KeyPrefix(key)+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("holder's key: %v %v", resp, err)
	}
	if _, err := c.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lk.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost did not close when the lease was revoked")
	}
	next, err := l.Lock(ctx, key)
	if err != nil {
		t.Fatalf("lock after the lease was revoked: %v", err)
	}
	if next.Token() <= lk.Token() {
		t.Fatalf("token %d after %d", next.Token(), lk.Token())
	}
	if err := next.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLocker(b *testing.B) {
	endpoints := testenv.EtcdEndpoints(b)
	prefix := testPrefix()
	locktest.Bench(b, func(b testing.TB) flashorder.Locker { return newLocker(b, endpoints, prefix) })
}
