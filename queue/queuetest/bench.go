package queuetest

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/flashorder/flashorder/queue"
)

// benchQueueLen is how many tickets wait in the Poll benchmark's queue.
const benchQueueLen = 10_000

// Bench runs the queue benchmarks, in parallel goroutines on one queue:
// Join (each operation a new user) and Poll (tickets of a queue of
// benchQueueLen waiting), the two calls the crowd makes.
func Bench(b *testing.B, backend Backend) {
	b.Run("Join", func(b *testing.B) {
		s := newStore(b, backend)
		q := queueID("bench-join")
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Join(ctx, q, fmt.Sprintf("u%d", n.Add(1)), t0, t0); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("Poll", func(b *testing.B) {
		s := newStore(b, backend)
		q := queueID("bench-poll")
		ids := make([]string, benchQueueLen)
		for i := range ids {
			ids[i] = join(b, s, q, fmt.Sprintf("u%d", i), t0, t0).ID
		}
		var n atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				tk, err := s.Poll(ctx, ids[n.Add(1)%benchQueueLen], t0)
				if err != nil || tk.Status != queue.StatusWaiting {
					b.Errorf("poll: %+v, %v", tk, err)
					return
				}
			}
		})
	})
}
