// Package lockcore is the part of a flashorder.Locker that does not depend on
// the server behind it: the gate that Close shuts, the merging of a call's
// context with the Locker's, the mapping of a failed Lock onto the errors
// that flashorder.Locker documents, the held-lock state (key, token, a Lost
// channel closed once, an Unlock that succeeds once) and the escaping of keys
// into names. It knows no client library; each backend package (inmem,
// zookeeper, etcd, redis) is an adapter that keeps only what its server
// needs. The in-process queue per key in front of the server is
// internal/keymutex.
package lockcore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashorder/flashorder"
)

// Gate counts the goroutines of a Locker (Lock calls, watchers, background
// cleanups) that its Close must wait for, and turns new ones away once the
// Locker is closed. The zero value is an open gate.
type Gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Enter counts a goroutine that Wait must wait for; it reports false, and
// counts nothing, once the gate is closed. A true Enter needs one Leave.
func (g *Gate) Enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// Add counts one more goroutine from within a counted one (between Enter and
// its Leave), also when the gate closed meanwhile: Wait cannot have returned
// yet, so it waits for this one too. It needs one Leave.
func (g *Gate) Add() { g.wg.Add(1) }

// Leave ends a goroutine counted by Enter or Add.
func (g *Gate) Leave() { g.wg.Done() }

// Close closes the gate; it reports whether this call did (false when it was
// already closed), so that a Locker's Close runs its shutdown once.
func (g *Gate) Close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	return true
}

// Closed reports whether Close was called.
func (g *Gate) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Wait waits until every counted goroutine has left.
func (g *Gate) Wait() { g.wg.Wait() }

// firstBackoff and maxBackoff bound the pauses of Retry: the first pause, and
// the most that the doubling reaches.
const (
	firstBackoff = 20 * time.Millisecond
	maxBackoff   = time.Second
)

// Retry runs attempt in a goroutine that the gate counts, again and again
// until it reports done or stop closes, pausing 20 ms after the first failure
// and twice as long after each next one, up to 1 s; then it calls release.
// It is how a backend deletes a waiter's leftover while the server is
// unreachable, and only then lets the next local waiter of the key in. On a
// closed gate it calls release at once and runs nothing: closing the session
// removes the leftovers.
func (g *Gate) Retry(stop <-chan struct{}, attempt func() (done bool), release func()) {
	if !g.Enter() {
		release()
		return
	}
	go func() {
		defer g.Leave()
		defer release()
		backoff := firstBackoff
		for !attempt() {
			t := time.NewTimer(backoff)
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}()
}

// MergeCancel returns a context that ends when ctx or other ends (with ctx's
// values and deadline), and a func that releases it; call it when done.
func MergeCancel(ctx, other context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(other, cancel)
	return ctx, func() { stop(); cancel() }
}

// LockErr turns a failure of Lock on key into the errors that
// flashorder.Locker documents: flashorder.ErrLockerClosed when the Locker is
// closed, whatever err says; err wrapped with flashorder.ErrLockSessionLost
// when sessionLost or err already is that; otherwise err wrapped with the
// backend's name and the key.
func LockErr(backend, key string, err error, closed, sessionLost bool) error {
	switch {
	case closed:
		return flashorder.ErrLockerClosed
	case sessionLost || errors.Is(err, flashorder.ErrLockSessionLost):
		return fmt.Errorf("%s: lock %q: %w (%w)", backend, key, flashorder.ErrLockSessionLost, err)
	}
	return fmt.Errorf("%s: lock %q: %w", backend, key, err)
}

// Held lock states.
const (
	held int32 = iota
	released
	lost
)

// Held is the state of a held lock that no backend does differently: its key
// and fencing token, and whether it is still held. It ends once, either
// released (Release) or lost (Lose), and closes the Lost channel then.
// Backends embed a *Held in their lock type, which then has the Key, Token
// and Lost methods of flashorder.Lock.
type Held struct {
	key   string
	token int64
	lost  chan struct{}
	state atomic.Int32
}

// NewHeld returns a held lock on key with the fencing token token.
func NewHeld(key string, token int64) *Held {
	return &Held{key: key, token: token, lost: make(chan struct{})}
}

// Key implements flashorder.Lock.
func (h *Held) Key() string { return h.key }

// Token implements flashorder.Lock.
func (h *Held) Token() int64 { return h.token }

// Lost implements flashorder.Lock: the channel closes when the lock is lost
// or released.
func (h *Held) Lost() <-chan struct{} { return h.lost }

// Release marks the lock released and closes Lost. It returns
// flashorder.ErrLockNotHeld, and changes nothing, when the lock was already
// released or lost: the caller's Unlock returns that and does no more.
func (h *Held) Release() error {
	if !h.state.CompareAndSwap(held, released) {
		return flashorder.ErrLockNotHeld
	}
	close(h.lost)
	return nil
}

// Lose marks the lock lost and closes Lost. It reports whether this call did
// (false when the lock was already released or lost), so that the caller
// cleans up once.
func (h *Held) Lose() bool {
	if !h.state.CompareAndSwap(held, lost) {
		return false
	}
	close(h.lost)
	return true
}

// Escape turns a key into a name for the server: every byte outside
// [A-Za-z0-9._-] is percent-encoded (so is '%'). Distinct keys get distinct
// names, and a name never holds a separator such as '/' or ':'.
func Escape(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
