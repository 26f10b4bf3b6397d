package inmem

import (
	"context"
	"errors"
	"sync"

	"github.com/flashorder/flashorder"
)

var (
	_ flashorder.Locker = (*Locker)(nil)
	_ flashorder.Lock   = (*lock)(nil)
)

// ErrLockerClosed reports a Lock call on a closed Locker.
var ErrLockerClosed = errors.New("inmem: locker closed")

// Locker is an in-process flashorder.Locker: exclusive within one process
// only, for the embedded default and tests. Waiters for a key are served in
// arrival order. Tokens come from one counter for the whole Locker, so they
// grow strictly from one holder of a key to the next.
type Locker struct {
	mu     sync.Mutex
	keys   map[string]*lockQueue
	token  int64
	closed bool
}

// lockQueue is the holder of one key and its waiters, oldest first. It is
// dropped when the key is free and nobody waits, so idle keys cost nothing.
type lockQueue struct {
	holder  *lock
	waiters []*lockWaiter
}

type lockWaiter struct {
	ready chan struct{} // closed when granted or refused
	lock  *lock
	err   error
}

type lock struct {
	locker   *Locker
	key      string
	token    int64
	lost     chan struct{}
	released bool
}

// NewLocker returns an empty in-process Locker.
func NewLocker() *Locker {
	return &Locker{keys: map[string]*lockQueue{}}
}

// Lock implements flashorder.Locker.
func (l *Locker) Lock(ctx context.Context, key string) (flashorder.Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrLockerClosed
	}
	q := l.keys[key]
	if q == nil {
		q = &lockQueue{}
		l.keys[key] = q
	}
	if q.holder == nil {
		q.holder = l.newLock(key)
		l.mu.Unlock()
		return q.holder, nil
	}
	w := &lockWaiter{ready: make(chan struct{})}
	q.waiters = append(q.waiters, w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return w.lock, w.err
	case <-ctx.Done():
	}
	l.mu.Lock()
	select {
	case <-w.ready:
		// Granted while giving up: pass the lock on.
		if w.lock != nil {
			l.releaseLocked(w.lock)
		}
	default:
		q.waiters = removeWaiter(q.waiters, w)
	}
	l.mu.Unlock()
	return nil, ctx.Err()
}

// Close implements flashorder.Locker: every held lock is lost and every
// waiter gets ErrLockerClosed.
func (l *Locker) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	for key, q := range l.keys {
		if q.holder != nil {
			q.holder.released = true
			close(q.holder.lost)
		}
		for _, w := range q.waiters {
			w.err = ErrLockerClosed
			close(w.ready)
		}
		delete(l.keys, key)
	}
	return nil
}

func (l *Locker) newLock(key string) *lock {
	l.token++
	return &lock{locker: l, key: key, token: l.token, lost: make(chan struct{})}
}

// releaseLocked releases lk and grants its key to the oldest waiter. l.mu is
// held.
func (l *Locker) releaseLocked(lk *lock) {
	lk.released = true
	close(lk.lost)
	q := l.keys[lk.key]
	if q == nil || q.holder != lk {
		return
	}
	if len(q.waiters) == 0 {
		delete(l.keys, lk.key)
		return
	}
	w := q.waiters[0]
	q.waiters[0] = nil
	q.waiters = q.waiters[1:]
	q.holder = l.newLock(lk.key)
	w.lock = q.holder
	close(w.ready)
}

func removeWaiter(ws []*lockWaiter, w *lockWaiter) []*lockWaiter {
	for i, x := range ws {
		if x == w {
			return append(ws[:i], ws[i+1:]...)
		}
	}
	return ws
}

// Key implements flashorder.Lock.
func (lk *lock) Key() string { return lk.key }

// Token implements flashorder.Lock.
func (lk *lock) Token() int64 { return lk.token }

// Lost implements flashorder.Lock.
func (lk *lock) Lost() <-chan struct{} { return lk.lost }

// Unlock implements flashorder.Lock.
func (lk *lock) Unlock(ctx context.Context) error {
	l := lk.locker
	l.mu.Lock()
	defer l.mu.Unlock()
	if lk.released {
		return flashorder.ErrLockNotHeld
	}
	l.releaseLocked(lk)
	return nil
}
