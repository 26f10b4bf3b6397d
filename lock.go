package flashorder

import (
	"context"
	"errors"
)

// Locker hands out exclusive locks by key, across every process that shares
// its backend (ZooKeeper, etcd, Redis) or within one process (in-memory).
type Locker interface {
	// Lock blocks until the caller holds the lock on key or ctx ends. A
	// caller that gives up (ctx error) leaves nothing behind in the backend.
	Lock(ctx context.Context, key string) (Lock, error)
	// Close releases the backend session; every lock still held is lost.
	Close() error
}

// Lock is a held lock.
type Lock interface {
	// Key returns the locked key.
	Key() string
	// Token returns the fencing token: it grows strictly from one holder of
	// a key to the next, so a store can refuse writes from a holder that has
	// lost the lock to a newer one.
	Token() int64
	// Lost returns a channel that is closed when the lock is lost (session
	// expired, lease gone) or released.
	Lost() <-chan struct{}
	// Unlock releases the lock. Releasing a lock that was already released
	// or lost returns ErrLockNotHeld and has no effect.
	Unlock(ctx context.Context) error
}

// ErrLockNotHeld reports an Unlock of a lock that is no longer held.
var ErrLockNotHeld = errors.New("flashorder: lock not held")
