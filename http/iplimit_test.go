package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/redis"
)

// frozenLimiter is an in-memory limiter whose clock never moves, so that no
// budget refills while a test runs.
func frozenLimiter(rateN int, period time.Duration, burst int) *inmem.RateLimiter {
	l := inmem.NewRateLimiter(rateN, period, burst, 0)
	now := time.Now()
	l.Now = func() time.Time { return now }
	return l
}

// allowIP runs IPLimiter.Allow on r and returns the answer.
func allowIP(t testing.TB, l *orderhttp.IPLimiter, r *http.Request) (bool, *httptest.ResponseRecorder) {
	t.Helper()
	w := httptest.NewRecorder()
	return l.Allow(w, r), w
}

// checkRateLimited checks a 429 rate_limited answer with a Retry-After of
// at least one second.
func checkRateLimited(t testing.TB, w *httptest.ResponseRecorder) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusTooManyRequests || body.Error.Code != flashorder.ERATELIMITED {
		t.Fatalf("refusal: %d %q (%v), want 429 rate_limited", w.Code, w.Body.String(), err)
	}
	if secs, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("refusal: Retry-After %q, want whole seconds >= 1", w.Header().Get("Retry-After"))
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("refusal: Content-Type %q", ct)
	}
}

// flood sends n requests from peer with a different X-Forwarded-For each
// (a bot rotating the header), from 8 goroutines, and returns how many
// passed. Every refusal is checked.
func flood(t *testing.T, l *orderhttp.IPLimiter, peer string, n int) int {
	t.Helper()
	var passed atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Bool
	const workers = 8
	for g := range workers {
		wg.Go(func() {
			for i := g; i < n; i += workers {
				r := request(peer, "198.51.100."+strconv.Itoa(i%250))
				r.Header.Set("X-Forwarded-For", strconv.Itoa(i%250)+".0.0.1, "+r.Header.Get("X-Forwarded-For"))
				w := httptest.NewRecorder()
				if l.Allow(w, r) {
					passed.Add(1)
					continue
				}
				if failed.Load() {
					continue
				}
				if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
					failed.Store(true)
					t.Errorf("refusal %d: %d, Retry-After %q", i, w.Code, w.Header().Get("Retry-After"))
				}
			}
		})
	}
	wg.Wait()
	return int(passed.Load())
}

// TestIPLimitTenThousand sends 10,000 requests from one untrusted address
// whose X-Forwarded-For changes every time: only the budget passes.
func TestIPLimitTenThousand(t *testing.T) {
	const burst = 20
	l := orderhttp.NewIPLimiter(frozenLimiter(burst, time.Minute, burst), mustProxies(t, "10.0.0.0/8"))
	if passed := flood(t, l, "203.0.113.9:5000", 10_000); passed != burst {
		t.Fatalf("%d of 10,000 requests passed, want the budget of %d", passed, burst)
	}
	_, w := allowIP(t, l, request("203.0.113.9:6000"))
	checkRateLimited(t, w)
	// Another address still has its budget.
	if ok, w := allowIP(t, l, request("203.0.113.10:5000")); !ok {
		t.Fatalf("another address refused: %d %s", w.Code, w.Body)
	}
}

// TestIPLimitRedis is TestIPLimitTenThousand on the shared Redis limiter,
// as several orderd share it.
func TestIPLimitRedis(t *testing.T) {
	u, err := url.Parse(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	// As orderd opens it: the waiting room's timeouts, so that a busy
	// machine's slow moment does not make the limiter fail open.
	c, err := redis.OpenClientTimeout(u.String(), redis.DefaultQueueTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	const burst = 20
	proxies := mustProxies(t, "10.0.0.0/8")
	rl := redis.NewRateLimiter(c, burst, time.Hour, burst)
	rl.Timeout = redis.DefaultQueueTimeout
	rl.Prefix = testenv.Unique("fotest") + ":iprate:"
	// Two instances behind one proxy, one budget.
	a, b := orderhttp.NewIPLimiter(rl, proxies), orderhttp.NewIPLimiter(rl, proxies)
	passed := flood(t, a, "203.0.113.9:5000", 5_000) + flood(t, b, "203.0.113.9:5000", 5_000)
	// GCRA at 20/h refills one request each 3 minutes: one more at most.
	if passed < burst || passed > burst+1 {
		t.Fatalf("%d of 10,000 requests passed, want the budget of %d", passed, burst)
	}
	_, w := allowIP(t, b, request("10.0.0.2:4000", "203.0.113.9"))
	checkRateLimited(t, w)
}

// TestIPLimitBehindProxy checks that clients behind a trusted proxy have a
// budget each, and the proxy's own address none of theirs.
func TestIPLimitBehindProxy(t *testing.T) {
	l := orderhttp.NewIPLimiter(frozenLimiter(2, time.Minute, 2), mustProxies(t, "10.0.0.0/8"))
	for i := range 2 {
		for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
			if ok, w := allowIP(t, l, request("10.0.0.2:4000", "6.6.6.6, "+client)); !ok {
				t.Fatalf("request %d of %s refused: %d %s", i+1, client, w.Code, w.Body)
			}
		}
	}
	_, w := allowIP(t, l, request("10.0.0.3:4000", "7.7.7.7, 198.51.100.1"))
	checkRateLimited(t, w)
	if ok, _ := allowIP(t, l, request("10.0.0.2:4000")); !ok {
		t.Fatal("the proxy's own request refused, its budget taken by its clients")
	}
}

// TestIPLimitIPv6Prefix checks that one /64 shares a budget and that
// IPv6PrefixBits 128 separates its addresses.
func TestIPLimitIPv6Prefix(t *testing.T) {
	var none orderhttp.TrustedProxies
	l := orderhttp.NewIPLimiter(frozenLimiter(1, time.Minute, 1), none)
	if ok, _ := allowIP(t, l, request("[2001:db8:1:2::1]:443")); !ok {
		t.Fatal("first request refused")
	}
	_, w := allowIP(t, l, request("[2001:db8:1:2:ffff::9]:443"))
	checkRateLimited(t, w)
	if ok, _ := allowIP(t, l, request("[2001:db8:1:3::1]:443")); !ok {
		t.Fatal("another /64 refused")
	}
	if got := l.Key(netip.MustParseAddr("2001:db8:1:2:ffff::9")); got != "ip:2001:db8:1:2::/64" {
		t.Errorf("Key = %q", got)
	}
	if got := l.Key(netip.MustParseAddr("::ffff:198.51.100.1")); got != "ip:198.51.100.1" {
		t.Errorf("Key = %q", got)
	}
	l = orderhttp.NewIPLimiter(frozenLimiter(1, time.Minute, 1), none)
	l.IPv6PrefixBits = 128
	for _, peer := range []string{"[2001:db8:1:2::1]:443", "[2001:db8:1:2::2]:443"} {
		if ok, _ := allowIP(t, l, request(peer)); !ok {
			t.Fatalf("%s refused with IPv6PrefixBits 128", peer)
		}
	}
}

// failingLimiter always fails.
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string) (bool, time.Duration, error) {
	return false, 0, errors.New("limiter down")
}

// TestIPLimitFailOpen checks that a failing limiter lets requests pass, as
// the per-user limit does, and that Check's refusal is the rate_limited
// error with its seconds.
func TestIPLimitFailOpen(t *testing.T) {
	var none orderhttp.TrustedProxies
	l := orderhttp.NewIPLimiter(failingLimiter{}, none)
	l.Logger = slog.New(slog.DiscardHandler)
	for range 3 {
		if ok, w := allowIP(t, l, request("203.0.113.9:5000")); !ok {
			t.Fatalf("refused with a failing limiter: %d %s", w.Code, w.Body)
		}
	}
	l = orderhttp.NewIPLimiter(frozenLimiter(1, time.Minute, 1), none)
	r := request("203.0.113.9:5000")
	if secs, err := l.Check(context.Background(), r); err != nil || secs != 0 {
		t.Fatalf("first Check: %d, %v", secs, err)
	}
	secs, err := l.Check(context.Background(), r)
	if flashorder.ErrorCode(err) != flashorder.ERATELIMITED || secs != 60 {
		t.Fatalf("second Check: %d, %v; want 60 s and rate_limited", secs, err)
	}
}
