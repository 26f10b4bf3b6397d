package redis_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/queue"
	"github.com/flashorder/flashorder/queue/queuetest"
	"github.com/flashorder/flashorder/redis"
)

// TestQueueStore runs the queue suite; every store has a client of its own
// on one prefix, as orderd instances share one Redis, so a new store is a
// restarted instance that must see the same queues.
func TestQueueStore(t *testing.T) {
	p := prefix()
	client(t) // fails or skips here when Redis is missing
	queuetest.Run(t, queuetest.Backend{
		New: func(_ testing.TB, opts queue.Options) queue.Store {
			s := redis.NewQueueStore(client(t), opts)
			s.Prefix = p
			s.Timeout = 5 * time.Second // the machine is shared; a slow moment is no failure here
			return s
		},
		Shared: true,
	})
}

// TestQueueKeysOneSlot checks that a queue's keys share one hash tag, so that
// its scripts run on one Redis Cluster slot.
func TestQueueKeysOneSlot(t *testing.T) {
	s := redis.NewQueueStore(nil, queue.Options{})
	for _, k := range s.QueueKeys(queue.SaleQueue("drop-7")) {
		open, end := strings.Index(k, "{"), strings.Index(k, "}")
		if open < 0 || end < open || k[open:end+1] != "{q:sale:drop-7}" {
			t.Errorf("key %q: hash tag is not {q:sale:drop-7}", k)
		}
	}
}

// TestQueueStoreRetention checks that a queue's keys expire after the
// retention, counted from the last join.
func TestQueueStoreRetention(t *testing.T) {
	c := client(t)
	s := redis.NewQueueStore(c, queue.Options{})
	s.Prefix, s.Timeout, s.Retention = prefix(), 5*time.Second, time.Hour
	now, q := time.Now(), queue.ProductQueue("keep-1")
	if _, err := s.Join(context.Background(), q, "u", now, now); err != nil {
		t.Fatal(err)
	}
	if err := s.SoldOut(context.Background(), q, now); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(context.Background(), s.QueueKeys(q)...).Val(); n != 5 {
		t.Fatalf("%d of the queue's keys exist, want 5 (all but the empty admissions)", n)
	}
	for _, k := range s.QueueKeys(q) {
		ttl, err := c.PTTL(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if exists := c.Exists(context.Background(), k).Val() == 1; exists && (ttl <= 0 || ttl > time.Hour) {
			t.Errorf("key %s: TTL %v, want within (0, 1h]", k, ttl)
		}
	}
}

// TestQueueStoreUnnumberedRecord checks that a ticket record written before
// admissions were numbered ("state|expiry|user") still reads and uses: an
// admission of number 0, as a rolling upgrade in the middle of a sale meets.
func TestQueueStoreUnnumberedRecord(t *testing.T) {
	c := client(t)
	s := redis.NewQueueStore(c, queue.Options{})
	s.Prefix, s.Timeout = prefix(), 5*time.Second
	ctx, now, q := context.Background(), time.Now(), queue.ProductQueue("old-1")
	tk, err := s.Join(ctx, q, "u-old", now, now)
	if err != nil {
		t.Fatal(err)
	}
	exp := now.Add(time.Minute).UnixMilli()
	keys := s.QueueKeys(q)
	c.ZRem(ctx, keys[1], tk.ID)
	c.ZRem(ctx, keys[2], tk.ID)
	c.ZAdd(ctx, keys[3], goredis.Z{Score: float64(exp), Member: tk.ID})
	c.HSet(ctx, keys[5], tk.ID, fmt.Sprintf("a|%d|u-old", exp))
	got, err := s.Poll(ctx, tk.ID, now)
	if err != nil || got.Status != queue.StatusAdmitted || got.Admission == nil || got.Admission.UserID != "u-old" || got.Admission.Number != 0 {
		t.Fatalf("poll of an unnumbered admission: %+v, %v", got, err)
	}
	if a, err := s.Use(ctx, tk.ID, now); err != nil || a.UserID != "u-old" || a.Number != 0 {
		t.Fatalf("use of an unnumbered admission: %+v, %v", a, err)
	}
	if rec := c.HGet(ctx, keys[5], tk.ID).Val(); rec != fmt.Sprintf("u|%d|u-old", exp) {
		t.Fatalf("used record %q", rec)
	}
}

func BenchmarkQueueStore(b *testing.B) {
	u := testenv.RedisURL(b)
	p := prefix()
	queuetest.Bench(b, queuetest.Backend{
		New: func(tb testing.TB, opts queue.Options) queue.Store {
			c, err := redis.OpenClient(u)
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { c.Close() })
			s := redis.NewQueueStore(c, opts)
			s.Prefix, s.Timeout = p, 5*time.Second
			return s
		},
		Shared: true,
	})
}
