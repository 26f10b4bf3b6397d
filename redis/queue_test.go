package redis_test

import (
	"testing"
	"time"

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
