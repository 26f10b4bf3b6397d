package redis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/queue"
	"github.com/flashorder/flashorder/queue/queuetest"
	"github.com/flashorder/flashorder/redis"
)

// clusterClient returns a client on the services script's 3-master Redis
// Cluster (FLASHORDER_TEST_REDIS_CLUSTER), opened as orderd opens
// --queue-store redis+cluster://, with the tests' timeouts.
func clusterClient(t testing.TB) *goredis.ClusterClient {
	t.Helper()
	c, err := redis.OpenUniversalClient(withPoolTimeout(t, testenv.RedisClusterURL(t)), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cc, ok := c.(*goredis.ClusterClient)
	if !ok {
		t.Fatalf("OpenUniversalClient(redis+cluster://) gave %T", c)
	}
	return cc
}

// TestQueueStoreCluster runs the queue suite on a Redis Cluster: every store
// has a cluster client of its own on one prefix, as orderd instances share
// one cluster.
func TestQueueStoreCluster(t *testing.T) {
	p := prefix()
	clusterClient(t) // fails or skips here when the cluster is missing
	queuetest.Run(t, queuetest.Backend{
		New: func(_ testing.TB, opts queue.Options) queue.Store {
			s := redis.NewQueueStore(clusterClient(t), opts)
			s.Prefix = p
			s.Timeout = testTimeout
			return s
		},
		Shared: true,
	})
}

// clusterQueues returns n queue ids and, by master address, the ids whose
// keys that master holds; it fails unless the queues span every master,
// so that a test on them exercises more than one node.
func clusterQueues(t *testing.T, c *goredis.ClusterClient, s *redis.QueueStore, n int) ([]string, map[string][]string) {
	t.Helper()
	ctx := context.Background()
	var masters int
	var mu sync.Mutex
	if err := c.ForEachMaster(ctx, func(context.Context, *goredis.Client) error {
		mu.Lock()
		masters++
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ids, byNode := make([]string, n), map[string][]string{}
	for i := range ids {
		ids[i] = queue.ProductQueue(fmt.Sprintf("spread-%d", i))
		m, err := c.MasterForKey(ctx, s.QueueKeys(ids[i])[0])
		if err != nil {
			t.Fatal(err)
		}
		addr := m.Options().Addr
		byNode[addr] = append(byNode[addr], ids[i])
	}
	if masters < 3 || len(byNode) != masters {
		t.Fatalf("%d queues on %d of %d masters (%v), want every master of at least 3", n, len(byNode), masters, byNode)
	}
	return ids, byNode
}

// TestQueueStoreClusterNodes checks that the queues' keys land on different
// masters, each queue's keys all on one (its slot's) master: the keys are
// read on that node itself, without a redirect.
func TestQueueStoreClusterNodes(t *testing.T) {
	ctx := context.Background()
	c := clusterClient(t)
	s := redis.NewQueueStore(c, queue.Options{})
	s.Prefix, s.Timeout = prefix(), testTimeout
	now := time.Now()
	_, byNode := clusterQueues(t, c, s, 12)
	for addr, ids := range byNode {
		node := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
		for _, id := range ids {
			if _, err := s.Join(ctx, id, "u1", now, now); err != nil {
				t.Fatalf("join %s: %v", id, err)
			}
			keys := s.QueueKeys(id)
			slot := c.ClusterKeySlot(ctx, keys[0]).Val()
			for _, k := range keys {
				if got := c.ClusterKeySlot(ctx, k).Val(); got != slot {
					t.Errorf("queue %s: key %s on slot %d, its meta on %d", id, k, got, slot)
				}
			}
			// meta, line, seen, users, tickets exist after a join (no admissions yet).
			if n, err := node.Exists(ctx, keys[0], keys[1], keys[2], keys[4], keys[5]).Result(); err != nil || n != 5 {
				t.Errorf("queue %s on %s: %d of its 5 keys there (%v), want 5", id, addr, n, err)
			}
		}
		node.Close()
	}
	t.Logf("queues by master: %v", byNode)
}

// TestQueueStoreClusterPipelines runs a crowd's joins on queues of every
// master at once, so that the store's pipelines carry scripts of several
// slots and nodes, and checks every answer: one ticket per user per queue,
// positions 1..n in each queue.
func TestQueueStoreClusterPipelines(t *testing.T) {
	ctx := context.Background()
	c := clusterClient(t)
	s := redis.NewQueueStore(c, queue.Options{})
	s.Prefix, s.Timeout = prefix(), testTimeout
	ids, _ := clusterQueues(t, c, s, 9)
	const users = 40
	start := time.Now().Add(-time.Second) // started: later arrivals in order
	type answer struct {
		t   queue.Ticket
		err error
	}
	answers := make([][]answer, len(ids))
	var wg sync.WaitGroup
	for qi := range ids {
		answers[qi] = make([]answer, users)
		for u := 0; u < users; u++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tk, err := s.Join(ctx, ids[qi], fmt.Sprintf("user-%d", u), start, time.Now())
				answers[qi][u] = answer{tk, err}
			}()
		}
	}
	wg.Wait()
	for qi, id := range ids {
		positions := map[int]bool{}
		for u, a := range answers[qi] {
			if a.err != nil {
				t.Fatalf("queue %s user %d: %v", id, u, a.err)
			}
			if a.t.QueueID != id || a.t.UserID != fmt.Sprintf("user-%d", u) || a.t.Status != queue.StatusWaiting {
				t.Fatalf("queue %s user %d: ticket %+v", id, u, a.t)
			}
			positions[a.t.Position] = true
		}
		for p := 1; p <= users; p++ {
			if !positions[p] {
				t.Fatalf("queue %s: no ticket at position %d (positions %v)", id, p, positions)
			}
		}
		st, err := s.Stats(ctx, id, time.Now())
		if err != nil || st.Waiting != users {
			t.Fatalf("queue %s: stats %+v, %v; want %d waiting", id, st, err, users)
		}
		// The same users again: the same tickets (one place per user).
		again, err := s.Join(ctx, id, "user-7", start, time.Now())
		if err != nil || again.ID != answers[qi][7].t.ID {
			t.Fatalf("queue %s: user-7 joined again: %+v, %v; want ticket %s", id, again, err, answers[qi][7].t.ID)
		}
	}
}
