package keymutex_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder/internal/keymutex"
)

func TestFIFOAndCleanup(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := keymutex.New()
	ctx := context.Background()
	unlock, err := m.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := m.Lock(ctx, "k")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			u()
		}()
		time.Sleep(20 * time.Millisecond) // queue in this order
	}
	// Another key is independent.
	other, err := m.Lock(ctx, "k2")
	if err != nil {
		t.Fatal(err)
	}
	other()
	unlock()
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("waiters acquired in order %v, want 0..4", order)
		}
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("%d keys remembered after everyone left", n)
	}
}

func TestCancel(t *testing.T) {
	m := keymutex.New()
	unlock, _ := m.Lock(context.Background(), "k")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := m.Lock(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock of a held key with a deadline: %v", err)
	}
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := m.Lock(canceled, "free"); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock with a canceled context: %v", err)
	}
	unlock()
	if n := m.Len(); n != 0 {
		t.Fatalf("%d keys remembered after the waiter gave up", n)
	}
}
