package locktest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flashorder/flashorder"
)

// Bench runs the lock benchmarks: Uncontended (one goroutine, lock and
// unlock of one key in a loop) and Handoff (2 clients x 4 goroutines
// contending for one key; every operation is a handoff to another waiter).
func Bench(b *testing.B, newClient func(b testing.TB) flashorder.Locker) {
	b.Run("Uncontended", func(b *testing.B) {
		l := newClient(b)
		defer l.Close()
		key := Key("bench")
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			lk, err := l.Lock(ctx, key)
			if err != nil {
				b.Fatal(err)
			}
			if err := lk.Unlock(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Handoff", func(b *testing.B) {
		const clients, goroutines = 2, 4
		key := Key("bench-handoff")
		ctx := context.Background()
		var ls []flashorder.Locker
		for c := 0; c < clients; c++ {
			l := newClient(b)
			defer l.Close()
			ls = append(ls, l)
		}
		var left atomic.Int64
		left.Store(int64(b.N))
		var wg sync.WaitGroup
		b.ResetTimer()
		for c := 0; c < clients; c++ {
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for left.Add(-1) >= 0 {
						lk, err := ls[c].Lock(ctx, key)
						if err != nil {
							b.Error(err)
							return
						}
						if err := lk.Unlock(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
		}
		wg.Wait()
	})
}
