// Package locktest is the one conformance suite that every flashorder.Locker
// backend runs against its real server: mutual exclusion across goroutines and
// separate clients, per-key independence, FIFO where promised, giving up while
// waiting, double release, monotonic fencing tokens, and the faults that
// distributed locks exist for (a holder whose client dies, a session that
// expires under a holder). It also holds the lock benchmarks.
package locktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// Backend describes a Locker backend to the suite.
type Backend struct {
	// NewClient returns a new client of the backend: its own connection and
	// session, as another process would have. The suite closes it.
	NewClient func(t testing.TB) flashorder.Locker
	// Addrs are the server addresses that NewClientAt may be pointed at
	// through proxies; empty for a backend without a server (in-process),
	// which skips the fault tests.
	Addrs []string
	// NewClientAt returns a new client that connects to addrs (proxies of
	// Addrs, in the same order) instead of Addrs.
	NewClientAt func(t testing.TB, addrs []string) flashorder.Locker
	// Expiry is the session or lease timeout of the clients: after it, the
	// server gives up on a dead client.
	Expiry time.Duration
	// FIFO reports that waiters of different clients acquire in the order
	// they started waiting.
	FIFO bool
	// Leftovers, when set, returns how many entries (znodes, keys) the
	// server keeps for key; after every waiter gave up or released, it must
	// be 0.
	Leftovers func(t testing.TB, key string) int
	// LeakOptions relax the suite's goroutine-leak check, for goroutines
	// that clients made outside the suite start on their own (a
	// reconnecting client library).
	LeakOptions []goleak.Option
}

// Run runs the conformance suite against b. When the suite ends, every
// goroutine that it or the backend started must be gone.
func Run(t *testing.T, b Backend) {
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, b.LeakOptions...)
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	t.Run("MutualExclusion", func(t *testing.T) { testMutualExclusion(t, b) })
	t.Run("PerKeyIndependence", func(t *testing.T) { testPerKey(t, b) })
	t.Run("FIFO", func(t *testing.T) { testFIFO(t, b) })
	t.Run("CancelWhileWaiting", func(t *testing.T) { testCancel(t, b) })
	t.Run("ReleaseTwice", func(t *testing.T) { testReleaseTwice(t, b) })
	t.Run("TokenMonotonic", func(t *testing.T) { testTokens(t, b) })
	t.Run("Close", func(t *testing.T) { testClose(t, b) })
	t.Run("HolderKilled", func(t *testing.T) { testHolderKilled(t, b) })
	t.Run("SessionExpiryLosesLock", func(t *testing.T) { testSessionExpiry(t, b) })
}

// Key returns a key no other test uses, so that runs sharing a server never
// meet.
func Key(name string) string { return testenv.Unique(name) }

func client(t testing.TB, b Backend) flashorder.Locker {
	t.Helper()
	l := b.NewClient(t)
	t.Cleanup(func() { l.Close() })
	return l
}

func mustLock(t testing.TB, l flashorder.Locker, key string) flashorder.Lock {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lk, err := l.Lock(ctx, key)
	if err != nil {
		t.Fatalf("lock %q: %v", key, err)
	}
	if lk.Key() != key {
		t.Fatalf("lock %q: Key() = %q", key, lk.Key())
	}
	return lk
}

func mustUnlock(t testing.TB, lk flashorder.Lock) {
	t.Helper()
	if err := lk.Unlock(context.Background()); err != nil {
		t.Fatalf("unlock %q: %v", lk.Key(), err)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitClosed waits up to d for ch to close.
func waitClosed(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func checkLeftovers(t *testing.T, b Backend, key string) {
	t.Helper()
	if b.Leftovers == nil {
		return
	}
	// Cleanups may run in the background; give them a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := b.Leftovers(t, key)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server keeps %d entries for %q after every holder and waiter left", n, key)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testMutualExclusion has goroutines of several clients increment a counter
// with a separate load and store: any overlap of two holders loses an
// update, and a second holder inside is caught directly.
func testMutualExclusion(t *testing.T, b Backend) {
	const clients, goroutines, rounds = 3, 4, 15
	key := Key("mutex")
	var counter, inside atomic.Int64
	var lastToken atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients*goroutines)
	for c := 0; c < clients; c++ {
		l := client(t, b)
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					lk, err := l.Lock(ctx, key)
					cancel()
					if err != nil {
						errs <- fmt.Errorf("lock: %w", err)
						return
					}
					if n := inside.Add(1); n != 1 {
						errs <- fmt.Errorf("%d holders inside the lock at once", n)
					}
					if tok, last := lk.Token(), lastToken.Load(); tok <= last {
						errs <- fmt.Errorf("token %d after token %d", tok, last)
					}
					lastToken.Store(lk.Token())
					v := counter.Load()
					time.Sleep(time.Duration(r%3) * time.Millisecond)
					counter.Store(v + 1)
					inside.Add(-1)
					if err := lk.Unlock(context.Background()); err != nil {
						errs <- fmt.Errorf("unlock: %w", err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := counter.Load(), int64(clients*goroutines*rounds); got != want {
		t.Fatalf("counter = %d after %d locked increments", got, want)
	}
	checkLeftovers(t, b, key)
}

// testPerKey holds keys that share prefixes or contain path characters and
// checks that each one is independent of the others.
func testPerKey(t *testing.T, b Backend) {
	base := Key("perkey")
	keys := []string{base, base + "-b", base + "/b", base + "/..", base + " b", base + "%2Fb", base + "é"}
	l1, l2 := client(t, b), client(t, b)
	var held []flashorder.Lock
	for _, k := range keys {
		held = append(held, mustLock(t, l1, k))
	}
	// Every key is held: another client must not get any of them...
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		lk, err := l2.Lock(ctx, k)
		cancel()
		if err == nil {
			lk.Unlock(context.Background())
			t.Fatalf("%q was handed to a second client while held", k)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("lock %q held elsewhere: %v, want context.DeadlineExceeded", k, err)
		}
	}
	// ...and releasing one frees exactly that one.
	for i, k := range keys {
		mustUnlock(t, held[i])
		lk := mustLock(t, l2, k)
		for _, other := range keys[i+1:] {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			olk, err := l2.Lock(ctx, other)
			cancel()
			if err == nil {
				olk.Unlock(context.Background())
				t.Fatalf("releasing %q freed %q too", k, other)
			}
		}
		mustUnlock(t, lk)
	}
	for _, k := range keys {
		checkLeftovers(t, b, k)
	}
}

// testFIFO queues waiters of separate clients one after another behind a
// holder and checks that they acquire in that order.
func testFIFO(t *testing.T, b Backend) {
	if !b.FIFO {
		t.Skip("this backend does not promise FIFO order")
	}
	const waiters = 4
	key := Key("fifo")
	holder := mustLock(t, client(t, b), key)
	order := make(chan int, waiters)
	var wg sync.WaitGroup
	for i := 0; i < waiters; i++ {
		l := client(t, b)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk := mustLockNoFatal(l, key)
			if lk == nil {
				order <- -1
				return
			}
			order <- i
			lk.Unlock(context.Background())
		}()
		// Time for the waiter to queue at the server before the next one.
		time.Sleep(300 * time.Millisecond)
	}
	mustUnlock(t, holder)
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("waiter %d acquired as number %d (waiters acquire out of order)", got, want)
		}
		want++
	}
}

func mustLockNoFatal(l flashorder.Locker, key string) flashorder.Lock {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lk, err := l.Lock(ctx, key)
	if err != nil {
		return nil
	}
	return lk
}

// testCancel has waiters give up (deadline, cancel) while the key is held
// and checks that they return the context's error and leave nothing behind:
// the next waiter acquires as soon as the holder releases.
func testCancel(t *testing.T, b Backend) {
	key := Key("cancel")
	holder := mustLock(t, client(t, b), key)
	waiter := client(t, b)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := waiter.Lock(ctx, key)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock with an expiring deadline: %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Lock(ctx, key)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("lock canceled while waiting: %v, want context.Canceled", err)
	}
	// Many local waiters giving up at once, too.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(50+10*i)*time.Millisecond)
			defer cancel()
			if lk, err := waiter.Lock(ctx, key); err == nil {
				lk.Unlock(context.Background())
				t.Errorf("a waiter acquired a held lock")
			}
		}()
	}
	wg.Wait()
	// A canceled context fails at once, even when the key is free.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := waiter.Lock(ctx, Key("free")); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock with a canceled context: %v, want context.Canceled", err)
	}

	mustUnlock(t, holder)
	// The waiter's client gets the lock at once: nothing of the canceled
	// attempts is queued before it.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lk, err := waiter.Lock(ctx, key)
	if err != nil {
		t.Fatalf("lock after the holder released and the waiters gave up: %v", err)
	}
	mustUnlock(t, lk)
	checkLeftovers(t, b, key)
}

func testReleaseTwice(t *testing.T, b Backend) {
	key := Key("twice")
	l := client(t, b)
	lk := mustLock(t, l, key)
	if isClosed(lk.Lost()) {
		t.Fatal("Lost is closed while the lock is held")
	}
	mustUnlock(t, lk)
	if !isClosed(lk.Lost()) {
		t.Fatal("Lost is still open after Unlock")
	}
	if err := lk.Unlock(context.Background()); !errors.Is(err, flashorder.ErrLockNotHeld) {
		t.Fatalf("second unlock: %v, want ErrLockNotHeld", err)
	}
	// The second Unlock released nothing: a new holder keeps its lock.
	lk2 := mustLock(t, l, key)
	if err := lk.Unlock(context.Background()); !errors.Is(err, flashorder.ErrLockNotHeld) {
		t.Fatalf("stale unlock: %v, want ErrLockNotHeld", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if other, err := client(t, b).Lock(ctx, key); err == nil {
		other.Unlock(context.Background())
		t.Fatal("a stale Unlock released the new holder's lock")
	}
	mustUnlock(t, lk2)
	checkLeftovers(t, b, key)
}

// testTokens alternates holders across clients and checks that tokens grow.
func testTokens(t *testing.T, b Backend) {
	key := Key("token")
	clients := []flashorder.Locker{client(t, b), client(t, b)}
	var last int64
	for i := 0; i < 10; i++ {
		lk := mustLock(t, clients[i%2], key)
		if lk.Token() <= last {
			t.Fatalf("holder %d got token %d after %d", i, lk.Token(), last)
		}
		last = lk.Token()
		mustUnlock(t, lk)
	}
	// Another key's tokens do not interfere with this key's.
	other := mustLock(t, clients[0], Key("token-other"))
	mustUnlock(t, other)
	lk := mustLock(t, clients[1], key)
	if lk.Token() <= last {
		t.Fatalf("token %d after %d", lk.Token(), last)
	}
	mustUnlock(t, lk)
}

// testClose closes a client that holds one key and waits for another.
func testClose(t *testing.T, b Backend) {
	key := Key("close")
	l := b.NewClient(t)
	lk := mustLock(t, l, key)
	other := mustLock(t, client(t, b), key+"-other")
	waitErr := make(chan error, 1)
	go func() {
		_, err := l.Lock(context.Background(), key+"-other")
		waitErr <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if !waitClosed(lk.Lost(), 5*time.Second) {
		t.Fatal("Lost did not close when the client closed")
	}
	select {
	case err := <-waitErr:
		if !errors.Is(err, flashorder.ErrLockerClosed) {
			t.Fatalf("waiting lock on a closed client: %v, want ErrLockerClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting Lock did not return when its client closed")
	}
	if _, err := l.Lock(context.Background(), key); !errors.Is(err, flashorder.ErrLockerClosed) {
		t.Fatalf("lock on a closed client: %v, want ErrLockerClosed", err)
	}
	if err := lk.Unlock(context.Background()); !errors.Is(err, flashorder.ErrLockNotHeld) {
		t.Fatalf("unlock after close: %v, want ErrLockNotHeld", err)
	}
	mustUnlock(t, other)
	// Closing released the key on the server.
	next := mustLock(t, client(t, b), key)
	mustUnlock(t, next)
}

// proxied returns a client that reaches the servers through proxies, and the
// proxies.
func proxied(t *testing.T, b Backend) (flashorder.Locker, []*Proxy) {
	t.Helper()
	if len(b.Addrs) == 0 || b.NewClientAt == nil {
		t.Skip("in-process backend: no server, no session to lose")
	}
	var proxies []*Proxy
	var addrs []string
	for _, a := range b.Addrs {
		p := NewProxy(t, a)
		proxies = append(proxies, p)
		addrs = append(addrs, p.Addr())
	}
	l := b.NewClientAt(t, addrs)
	t.Cleanup(func() { l.Close() })
	return l, proxies
}

// faultBound is how long the server and the client may take to notice a dead
// peer: the expiry plus slack for a loaded machine.
func faultBound(b Backend) time.Duration { return 2*b.Expiry + 5*time.Second }

// testHolderKilled cuts a holder off the network for good: the next waiter
// must acquire once the server expires the holder's session, with a newer
// token.
func testHolderKilled(t *testing.T, b Backend) {
	key := Key("killed")
	victim, proxies := proxied(t, b)
	held := mustLock(t, victim, key)
	got := make(chan flashorder.Lock, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), faultBound(b)+10*time.Second)
		defer cancel()
		lk, err := client(t, b).Lock(ctx, key)
		if err != nil {
			t.Errorf("waiter: %v", err)
			got <- nil
			return
		}
		got <- lk
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case <-got:
		t.Fatal("the waiter acquired while the holder was alive")
	default:
	}
	start := time.Now()
	for _, p := range proxies {
		p.Cut()
	}
	select {
	case lk := <-got:
		if lk == nil {
			t.FailNow()
		}
		t.Logf("waiter acquired %v after the holder was cut off (expiry %v)", time.Since(start).Round(time.Millisecond), b.Expiry)
		if lk.Token() <= held.Token() {
			t.Fatalf("new holder's token %d is not above the dead holder's %d", lk.Token(), held.Token())
		}
		mustUnlock(t, lk)
	case <-time.After(faultBound(b)):
		t.Fatalf("the waiter did not acquire within %v of the holder's death (expiry %v)", faultBound(b), b.Expiry)
	}
}

// testSessionExpiry cuts a holder off until its session expires: its Lost
// channel must close, its Unlock must report ErrLockNotHeld, and once the
// network is back the same client must work again with a new session.
func testSessionExpiry(t *testing.T, b Backend) {
	key := Key("expiry")
	victim, proxies := proxied(t, b)
	held := mustLock(t, victim, key)
	for _, p := range proxies {
		p.Cut()
	}
	if !waitClosed(held.Lost(), faultBound(b)) {
		t.Fatalf("Lost did not close within %v of the holder losing its server (expiry %v)", faultBound(b), b.Expiry)
	}
	// Another client gets the key: the server expired the session too.
	other := client(t, b)
	lk := mustLock(t, other, key)
	if lk.Token() <= held.Token() {
		t.Fatalf("token %d after the expired holder's %d", lk.Token(), held.Token())
	}
	for _, p := range proxies {
		p.Resume()
	}
	if err := held.Unlock(context.Background()); !errors.Is(err, flashorder.ErrLockNotHeld) {
		t.Fatalf("unlock of a lost lock: %v, want ErrLockNotHeld", err)
	}
	// The stale Unlock did not release the new holder.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if x, err := client(t, b).Lock(ctx, key); err == nil {
		x.Unlock(context.Background())
		cancel()
		t.Fatal("the lost holder's Unlock released the new holder")
	}
	cancel()
	mustUnlock(t, lk)
	// The victim's client recovers: a new session, new locks, newer tokens.
	ctx, cancel = context.WithTimeout(context.Background(), faultBound(b)+10*time.Second)
	defer cancel()
	var again flashorder.Lock
	for {
		var err error
		again, err = victim.Lock(ctx, key)
		if err == nil {
			break
		}
		// Reconnecting may fail a call or two; the client must get there.
		if ctx.Err() != nil {
			t.Fatalf("lock on the recovered client: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if again.Token() <= lk.Token() {
		t.Fatalf("token %d after %d", again.Token(), lk.Token())
	}
	mustUnlock(t, again)
	checkLeftovers(t, b, key)
}
