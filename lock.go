package flashorder

import (
	"context"
	"errors"
)

// Locker hands out exclusive locks by key, across every process that shares
// its backend (ZooKeeper, etcd, Redis) or within one process (in-memory).
//
// A lock is a promise about time, and time can be lost (a GC pause, a network
// partition, an expired session): a holder may still believe it holds a lock
// that the backend already gave to someone else. Writes that must not
// interleave therefore carry the lock's fencing token (Lock.Token) to the
// store, which refuses a token older than the last one it accepted.
type Locker interface {
	// Lock blocks until the caller holds the lock on key or ctx ends. A
	// caller that gives up leaves nothing behind in the backend (a backend
	// that cannot confirm the cleanup keeps retrying it in the background,
	// and the session or lease expiry removes it at the latest).
	//
	// Errors: ctx.Err() (wrapped) when ctx ends first; ErrLockerClosed after
	// Close; ErrLockSessionLost when the backend session or lease ends while
	// waiting; any other error is the backend's (connection trouble), wrapped
	// with what failed.
	Lock(ctx context.Context, key string) (Lock, error)
	// Close ends the backend session: every lock still held is lost (its Lost
	// channel closes) and waiting Lock calls return ErrLockerClosed.
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
	// expired, lease gone, Locker closed) or released. A closed channel is
	// advice, not a guarantee: a holder may learn of the loss late, which is
	// why writes are fenced with Token.
	Lost() <-chan struct{}
	// Unlock releases the lock. Releasing a lock that was already released
	// or lost returns ErrLockNotHeld and has no effect. Any other error means
	// the backend did not confirm the release; the backend then keeps
	// retrying it in the background (or the session expiry releases it).
	Unlock(ctx context.Context) error
}

// Lock errors. Backends return them as they are or wrapped; test with
// errors.Is.
var (
	// ErrLockNotHeld reports an Unlock of a lock that is no longer held.
	ErrLockNotHeld = errors.New("flashorder: lock not held")
	// ErrLockerClosed reports a Lock call on (or waiting in) a closed Locker.
	ErrLockerClosed = errors.New("flashorder: locker closed")
	// ErrLockSessionLost reports that the backend session or lease ended
	// while Lock was waiting; a new call gets a new session.
	ErrLockSessionLost = errors.New("flashorder: lock session lost")
)
