package http_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// hooked runs before each order that reaches the real strategy.
type hooked struct {
	next   flashorder.OrderPlacer
	before func() error
}

func (h *hooked) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	if err := h.before(); err != nil {
		return nil, err
	}
	return h.next.PlaceOrder(ctx, req)
}

// newRowServer returns a server on cfg and a fresh SQLite database whose
// placer runs before ahead of the row strategy, with product "p" (100 units)
// in stock.
func newRowServer(t *testing.T, cfg orderhttp.Config, before func() error) (*orderhttp.Server, http.Handler) {
	t.Helper()
	db, err := gormdb.Open(context.Background(), testenv.SQLiteURL(t), gormdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.PutProduct(context.Background(), flashorder.Product{SKU: "p", Name: "p", PriceCents: 5, Stock: 100}); err != nil {
		t.Fatal(err)
	}
	cfg.Store = db
	s := newServer(cfg, &hooked{next: checkout.NewRow(db), before: before}, nil)
	return s, s.Handler()
}

func post(h http.Handler, key, user string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/api/v1/orders", strings.NewReader(`{"user_id":"`+user+`","items":[{"sku":"p","quantity":1}]}`))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// TestRetryAfter5xx checks that a 5xx is not stored: a retry with the same
// key runs again and succeeds.
func TestRetryAfter5xx(t *testing.T) {
	var calls atomic.Int32
	_, h := newRowServer(t, orderhttp.Config{}, func() error {
		if calls.Add(1) == 1 {
			return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "retry later", Err: errors.New("injected")}
		}
		return nil
	})
	if w := post(h, "k1", "u1"); w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("injected failure: %d %s", w.Code, w.Body)
	}
	w := post(h, "k1", "u1")
	if w.Code != 201 || w.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry: %d %s", w.Code, w.Body)
	}
	if again := post(h, "k1", "u1"); again.Code != 201 || again.Body.String() != w.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay of the retry: %d %s", again.Code, again.Body)
	}
}

// TestShedding fills MaxInflight with orders held in the placer: the next
// ones get 503 overloaded with Retry-After at once; once they finish, orders
// pass again.
func TestShedding(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(3)
	var hold atomic.Bool
	hold.Store(true)
	_, h := newRowServer(t, orderhttp.Config{MaxInflight: 3}, func() error {
		if hold.Load() {
			entered.Done()
			<-release
		}
		return nil
	})
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); codes <- post(h, "", "held-"+string(rune('a'+i))).Code }()
	}
	entered.Wait()
	hold.Store(false)
	for range 20 {
		w := post(h, "", "shed")
		if w.Code != 503 || !strings.Contains(w.Body.String(), `"overloaded"`) || w.Header().Get("Retry-After") != "1" {
			t.Fatalf("beyond MaxInflight: %d %s %v", w.Code, w.Body, w.Header())
		}
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 201 {
			t.Fatalf("a held order got %d", c)
		}
	}
	if w := post(h, "", "after"); w.Code != 201 {
		t.Fatalf("after the load: %d %s", w.Code, w.Body)
	}
}

// TestRateLimit checks 429 rate_limited with Retry-After for one user, other
// users unaffected, and recovery after Retry-After.
func TestRateLimit(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	l := inmem.NewRateLimiter(2, time.Second, 2, 0)
	l.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	_, h := newRowServer(t, orderhttp.Config{RateLimiter: l}, func() error { return nil })
	for i := range 2 {
		if w := post(h, "", "busy"); w.Code != 201 {
			t.Fatalf("order %d within the burst: %d %s", i, w.Code, w.Body)
		}
	}
	w := post(h, "", "busy")
	if w.Code != 429 || !strings.Contains(w.Body.String(), `"rate_limited"`) || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("past the burst: %d %s %v", w.Code, w.Body, w.Header())
	}
	if w := post(h, "", "calm"); w.Code != 201 {
		t.Fatalf("another user: %d", w.Code)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if w := post(h, "", "busy"); w.Code != 201 {
		t.Fatalf("after Retry-After: %d %s", w.Code, w.Body)
	}
}

// failing is a limiter whose backend is down.
type failing struct{}

func (failing) Allow(context.Context, string) (bool, time.Duration, error) {
	return false, 0, errors.New("limiter down")
}

// TestRateLimiterDown checks that a failing limiter lets orders through.
func TestRateLimiterDown(t *testing.T) {
	_, h := newRowServer(t, orderhttp.Config{RateLimiter: failing{}}, func() error { return nil })
	if w := post(h, "", "u1"); w.Code != 201 {
		t.Fatalf("with the limiter down: %d %s", w.Code, w.Body)
	}
}
