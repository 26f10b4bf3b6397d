package inmem_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/locktest"
)

func TestLocker(t *testing.T) {
	// One process has one lock table: the suite's "clients" are views of
	// one Locker, as the goroutines of one orderd share it.
	shared := inmem.NewLocker()
	t.Cleanup(func() { shared.Close() })
	locktest.Run(t, locktest.Backend{
		NewClient: func(testing.TB) flashorder.Locker { return newView(shared) },
		FIFO:      true,
	})
}

func BenchmarkLocker(b *testing.B) {
	shared := inmem.NewLocker()
	defer shared.Close()
	locktest.Bench(b, func(testing.TB) flashorder.Locker { return newView(shared) })
}

// TestLockerClose closes the Locker itself: held locks are lost, waiters and
// later calls get ErrLockerClosed.
func TestLockerClose(t *testing.T) {
	l := inmem.NewLocker()
	lk, err := l.Lock(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() {
		_, err := l.Lock(context.Background(), "k")
		waitErr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case <-lk.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost did not close on Close")
	}
	if err := <-waitErr; !errors.Is(err, flashorder.ErrLockerClosed) {
		t.Fatalf("waiter: %v, want ErrLockerClosed", err)
	}
	if _, err := l.Lock(context.Background(), "k"); !errors.Is(err, flashorder.ErrLockerClosed) {
		t.Fatalf("lock after close: %v, want ErrLockerClosed", err)
	}
	if err := lk.Unlock(context.Background()); !errors.Is(err, flashorder.ErrLockNotHeld) {
		t.Fatalf("unlock after close: %v, want ErrLockNotHeld", err)
	}
}

// view is one "client" of a shared in-process Locker: closing it loses only
// the locks taken through it and ends only its waiters.
type view struct {
	l      *inmem.Locker
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	held   map[flashorder.Lock]struct{}
}

func newView(l *inmem.Locker) *view {
	v := &view{l: l, held: map[flashorder.Lock]struct{}{}}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	return v
}

func (v *view) Lock(ctx context.Context, key string) (flashorder.Lock, error) {
	if v.ctx.Err() != nil {
		return nil, flashorder.ErrLockerClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer context.AfterFunc(v.ctx, cancel)()
	defer cancel()
	lk, err := v.l.Lock(ctx, key)
	if err != nil {
		if v.ctx.Err() != nil {
			return nil, flashorder.ErrLockerClosed
		}
		return nil, err
	}
	v.mu.Lock()
	v.held[lk] = struct{}{}
	v.mu.Unlock()
	return lk, nil
}

func (v *view) Close() error {
	v.cancel()
	v.mu.Lock()
	defer v.mu.Unlock()
	for lk := range v.held {
		lk.Unlock(context.Background())
	}
	return nil
}
