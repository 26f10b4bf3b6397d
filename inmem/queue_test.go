package inmem_test

import (
	"testing"

	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/queue"
	"github.com/flashorder/flashorder/queue/queuetest"
)

func TestQueueStore(t *testing.T) {
	queuetest.Run(t, queuetest.Backend{
		New: func(_ testing.TB, opts queue.Options) queue.Store { return inmem.NewQueueStore(opts) },
	})
}

func BenchmarkQueueStore(b *testing.B) {
	queuetest.Bench(b, queuetest.Backend{
		New: func(_ testing.TB, opts queue.Options) queue.Store { return inmem.NewQueueStore(opts) },
	})
}
