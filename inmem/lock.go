package inmem

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/keymutex"
	"github.com/flashorder/flashorder/internal/lockcore"
)

var (
	_ flashorder.Locker = (*Locker)(nil)
	_ flashorder.Lock   = (*lock)(nil)
)

// Locker is an in-process flashorder.Locker: FIFO per key, never lost while
// the process lives. It excludes goroutines of one process only, so it keeps
// the `lock` strategy's promises only for a single orderd on its database.
//
// Tokens come from one counter per Locker that starts at the wall clock in
// nanoseconds, so they grow across keys and across restarts of the process
// (unless the clock moves back), and a database fenced by an earlier run does
// not refuse the next one.
type Locker struct {
	keys  *keymutex.Map
	token atomic.Int64

	// ctx ends on Close and wakes every waiter.
	ctx    context.Context
	cancel context.CancelFunc
}

// NewLocker returns an empty in-process Locker.
func NewLocker() *Locker {
	l := &Locker{keys: keymutex.New()}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.token.Store(time.Now().UnixNano())
	return l
}

// Lock implements flashorder.Locker.
func (l *Locker) Lock(ctx context.Context, key string) (flashorder.Lock, error) {
	if l.ctx.Err() != nil {
		return nil, flashorder.ErrLockerClosed
	}
	ctx, stop := lockcore.MergeCancel(ctx, l.ctx)
	defer stop()
	unlock, err := l.keys.Lock(ctx, key)
	if err != nil {
		return nil, lockcore.LockErr("inmem", key, err, l.ctx.Err() != nil, false)
	}
	if l.ctx.Err() != nil {
		// Close released a holder and we won the race for its slot.
		unlock()
		return nil, flashorder.ErrLockerClosed
	}
	k := &lock{Held: lockcore.NewHeld(key, l.token.Add(1)), unlock: unlock}
	// Close loses every held lock; AfterFunc costs no goroutine until then.
	k.stop = context.AfterFunc(l.ctx, func() {
		if k.Lose() {
			k.unlock()
		}
	})
	return k, nil
}

// Close implements flashorder.Locker: held locks are lost, waiters get
// ErrLockerClosed.
func (l *Locker) Close() error {
	l.cancel()
	return nil
}

type lock struct {
	*lockcore.Held
	unlock func()
	stop   func() bool
}

// Unlock implements flashorder.Lock.
func (k *lock) Unlock(context.Context) error {
	k.stop()
	if err := k.Release(); err != nil {
		return err
	}
	k.unlock()
	return nil
}
