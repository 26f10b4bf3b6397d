// Package ratelimittest is the one conformance suite that every
// flashorder.RateLimiter backend runs (in-process and Redis), the way package
// locktest serves the Lockers: the burst passes and the next request is
// refused with the wait until a request refills; other users keep their own
// budget; a refusal takes nothing from the budget, and after Retry-After one
// request passes; concurrent requests of one user never get more than the
// burst through, across instances when the backend is shared.
package ratelimittest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// Backend describes a RateLimiter backend to the suite.
type Backend struct {
	// New returns a limiter that lets each user make rate requests per
	// period, with bursts of up to burst. The suite uses user ids that no
	// other test or run uses, so limiters of one backend may share a key
	// space.
	New func(t *testing.T, rate int, period time.Duration, burst int) flashorder.RateLimiter
	// Shared reports that limiters New returns with the same settings share
	// each user's budget, as orderd instances on one Redis do: the suite
	// then spreads a user's requests over two limiters.
	Shared bool
}

// Run runs the conformance suite against b. When the suite ends, every
// goroutine it started must be gone.
func Run(t *testing.T, b Backend) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	t.Run("Limit", func(t *testing.T) { testLimit(t, b) })
	t.Run("Refill", func(t *testing.T) { testRefill(t, b) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, b) })
}

// retrySlack is how far a Retry-After may exceed the exact wait: a backend
// that computes it in floating-point seconds (Redis's GCRA script) may round
// up by less than this.
const retrySlack = time.Millisecond

// instances returns the limiters a user's requests are spread over: two
// instances sharing the budget when b is shared, one otherwise.
func instances(t *testing.T, b Backend, rate int, period time.Duration, burst int) []flashorder.RateLimiter {
	ls := []flashorder.RateLimiter{b.New(t, rate, period, burst)}
	if b.Shared {
		ls = append(ls, b.New(t, rate, period, burst))
	}
	return ls
}

func allow(t *testing.T, l flashorder.RateLimiter, user string) (bool, time.Duration) {
	t.Helper()
	ok, retry, err := l.Allow(context.Background(), user)
	if err != nil {
		t.Fatalf("allow %s: %v", user, err)
	}
	return ok, retry
}

// checkRetry fails unless a refusal's retry is the wait for the next request:
// one emission interval (period/rate) after the burst was taken, less what
// has passed since (elapsed), and never more.
func checkRetry(t *testing.T, retry, interval, elapsed time.Duration) {
	t.Helper()
	if retry < interval-elapsed || retry > interval+retrySlack || retry <= 0 {
		t.Fatalf("retry after %v; want %v less the %v since the burst began, and above 0", retry, interval, elapsed)
	}
}

// testLimit: a user's burst passes and the next request is refused with the
// wait until the next one refills; another user is not limited. The period
// is long, so that no request refills during the subtest however slow the
// machine is.
func testLimit(t *testing.T, b Backend) {
	const rate, period, burst = 4, time.Hour, 4
	ls := instances(t, b, rate, period, burst)
	u1, u2 := testenv.Unique("u1"), testenv.Unique("u2")
	began := time.Now()
	for i := range burst {
		if ok, _ := allow(t, ls[i%len(ls)], u1); !ok {
			t.Fatalf("request %d within the burst of %d refused", i, burst)
		}
	}
	for i := range 3 {
		ok, retry := allow(t, ls[i%len(ls)], u1)
		if ok {
			t.Fatalf("request %d past the burst of %d passed", burst+i, burst)
		}
		checkRetry(t, retry, period/rate, time.Since(began))
	}
	if ok, _ := allow(t, ls[len(ls)-1], u2); !ok {
		t.Fatal("another user was limited")
	}
}

// testRefill: a refusal takes nothing from the budget, so after its
// Retry-After one request passes, and the one right after it is refused
// again (unless the machine stalled for a whole interval between them, which
// the subtest then reports and forgives).
func testRefill(t *testing.T, b Backend) {
	const rate, period, burst = 1, time.Second, 1
	ls := instances(t, b, rate, period, burst)
	u := testenv.Unique("u1")
	began := time.Now()
	if ok, _ := allow(t, ls[0], u); !ok {
		t.Fatal("the first request refused")
	}
	var retry time.Duration
	for i := range 3 {
		var ok bool
		if ok, retry = allow(t, ls[i%len(ls)], u); ok {
			t.Fatalf("request %d past the burst passed", i+1)
		}
		checkRetry(t, retry, period/rate, time.Since(began))
	}
	time.Sleep(retry)
	passed := time.Now()
	if ok, _ := allow(t, ls[len(ls)-1], u); !ok {
		t.Fatal("refused after Retry-After: the refusals took from the budget")
	}
	ok, _ := allow(t, ls[0], u)
	if since := time.Since(passed); ok && since < period/rate {
		t.Fatalf("a second request passed %v after the refilled one, at %d per %v", since, rate, period)
	} else if ok {
		t.Logf("the second request came %v after the refilled one, a whole interval: not checked", since)
	}
}

// testConcurrent sends 100 requests of one user at once (over two instances
// when the backend is shared): exactly the burst passes, and every refusal
// says how long to wait.
func testConcurrent(t *testing.T, b Backend) {
	const rate, period, burst, n = 1, time.Hour, 10, 100
	ls := instances(t, b, rate, period, burst)
	u := testenv.Unique("u1")
	var passed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, retry, err := ls[i%len(ls)].Allow(context.Background(), u)
			switch {
			case err != nil:
				t.Error(err)
			case ok:
				passed.Add(1)
			case retry <= 0:
				t.Errorf("refused with retry after %v", retry)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := passed.Load(); got != burst {
		t.Fatalf("%d of %d concurrent requests passed; want the burst, %d", got, n, burst)
	}
}
