package queuetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder/queue"
)

// benchQueueLen is how many tickets wait in the Poll benchmark's queue.
const benchQueueLen = 10_000

// benchTouchBatch is how many polls answered from memory one Touch of the
// Touch benchmark carries (a room sends a round's in one call).
const benchTouchBatch = 500

// Bench runs the queue benchmarks, in parallel goroutines on one queue:
// Join (each operation a new user) and Poll (tickets of a queue of
// benchQueueLen waiting), the two calls the crowd makes; and Touch, each
// operation one poll answered from memory before the start, sent to the
// store in Touches of benchTouchBatch tickets as a room does.
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
	b.Run("Touch", func(b *testing.B) {
		s := newStore(b, backend)
		q := queueID("bench-touch")
		start := t0.Add(time.Hour)
		ids := make([]string, benchQueueLen)
		for i := range ids {
			ids[i] = join(b, s, q, fmt.Sprintf("u%d", i), start, t0).ID
		}
		touches := make([]queue.Touch, 0, benchTouchBatch)
		at := t0
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			touches = append(touches, queue.Touch{TicketID: ids[i%benchQueueLen], At: at})
			if len(touches) < benchTouchBatch && i < b.N-1 {
				continue
			}
			gone, err := s.Touch(ctx, q, touches, at)
			if err != nil || len(gone) > 0 {
				b.Fatalf("touch: %d gone, %v", len(gone), err)
			}
			touches, at = touches[:0], at.Add(time.Millisecond)
		}
	})
}
