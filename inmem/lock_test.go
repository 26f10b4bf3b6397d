package inmem_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/inmem"
)

func TestLockerExclusiveFIFOAndTokens(t *testing.T) {
	ctx := context.Background()
	l := inmem.NewLocker()
	defer l.Close()
	first, err := l.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	// Waiters queue up in arrival order.
	const n = 5
	got := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk, err := l.Lock(ctx, "k")
			if err != nil {
				t.Error(err)
				return
			}
			got <- i
			if err := lk.Unlock(ctx); err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(20 * time.Millisecond) // let waiter i enqueue before i+1
	}
	// Another key is independent.
	other, err := l.Lock(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if other.Token() <= first.Token() {
		t.Fatalf("token %d after %d", other.Token(), first.Token())
	}
	select {
	case i := <-got:
		t.Fatalf("waiter %d got the lock while it was held", i)
	default:
	}
	if err := first.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.Lost():
	default:
		t.Fatal("Lost not closed after Unlock")
	}
	if err := first.Unlock(ctx); !errors.Is(err, flashorder.ErrLockNotHeld) {
		t.Fatalf("second Unlock: %v, want ErrLockNotHeld", err)
	}
	wg.Wait()
	close(got)
	want := 0
	for i := range got {
		if i != want {
			t.Fatalf("waiter %d served as number %d: not FIFO", i, want)
		}
		want++
	}
	next, err := l.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if next.Token() <= other.Token() {
		t.Fatalf("token did not grow: %d after %d", next.Token(), other.Token())
	}
}

func TestLockerContextAndClose(t *testing.T) {
	ctx := context.Background()
	l := inmem.NewLocker()
	held, err := l.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(short, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock on a held key with a short ctx: %v", err)
	}
	// The waiter that gave up left nothing behind: the next one is served.
	waiting := make(chan error, 1)
	go func() {
		_, err := l.Lock(ctx, "k")
		waiting <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Lost():
	case <-time.After(time.Second):
		t.Fatal("Close did not lose the held lock")
	}
	if err := <-waiting; !errors.Is(err, inmem.ErrLockerClosed) {
		t.Fatalf("waiter after Close: %v", err)
	}
	if _, err := l.Lock(ctx, "k"); !errors.Is(err, inmem.ErrLockerClosed) {
		t.Fatalf("Lock after Close: %v", err)
	}
	if err := held.Unlock(ctx); !errors.Is(err, flashorder.ErrLockNotHeld) {
		t.Fatalf("Unlock of a lost lock: %v", err)
	}
}

func TestLockerGiveUpPassesLockOn(t *testing.T) {
	ctx := context.Background()
	l := inmem.NewLocker()
	defer l.Close()
	held, _ := l.Lock(ctx, "k")
	short, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		_, err := l.Lock(short, "k")
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	held.Unlock(ctx)
	again, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	if _, err := l.Lock(again, "k"); err != nil {
		t.Fatalf("key stuck after a waiter gave up: %v", err)
	}
}
