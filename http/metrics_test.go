package http_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
)

// placerFunc is an OrderPlacer made of a function.
type placerFunc func(context.Context, *flashorder.PlaceOrderRequest) (*flashorder.Order, error)

func (f placerFunc) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	return f(ctx, req)
}

// metricValue returns the value of the series of family name with exactly
// the given labels, 0 when there is none.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

func ordersWith(code string) map[string]string {
	return map[string]string{"route": "/api/v1/orders", "method": "POST", "code": code}
}

// TestOrderOutcomesCounted checks that every refusal of an order is counted
// in flashorder_orders_refused_total, also those answered before the
// handler: shed beyond MaxInflight (overloaded), a body declared too large,
// and a panic (internal, answered 500).
func TestOrderOutcomesCounted(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	placed := instantPlacer{}
	s := newServer(orderhttp.Config{Store: benchStore{}, MaxInflight: 1}, placerFunc(func(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
		switch req.UserID {
		case "held":
			close(entered)
			<-release
		case "panics":
			panic("placer bug")
		}
		return placed.PlaceOrder(ctx, req)
	}), nil)
	h := s.Handler()
	reg := s.Registry()

	held := make(chan *httptest.ResponseRecorder)
	go func() { held <- post(h, "", "held") }()
	<-entered
	w := post(h, "", "shed")
	if w.Code != 503 || !strings.Contains(w.Body.String(), `"overloaded"`) || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("beyond MaxInflight: %d %s %v", w.Code, w.Body, w.Header())
	}
	if v := metricValue(t, reg, "flashorder_orders_refused_total", map[string]string{"code": "overloaded"}); v != 1 {
		t.Errorf(`orders_refused_total{code="overloaded"} = %v after one shed request, want 1`, v)
	}
	close(release)
	if w := <-held; w.Code != 201 {
		t.Fatalf("held order: %d %s", w.Code, w.Body)
	}

	req := httptest.NewRequest("POST", "/api/v1/orders", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = orderhttp.MaxBodyBytes + 1
	big := httptest.NewRecorder()
	h.ServeHTTP(big, req)
	if big.Code != 413 {
		t.Fatalf("declared too large: %d %s", big.Code, big.Body)
	}
	if w := post(h, "", "panics"); w.Code != 500 || !strings.Contains(w.Body.String(), `"internal"`) {
		t.Fatalf("panicking placer: %d %s", w.Code, w.Body)
	}

	for name, want := range map[string]float64{
		"overloaded": 1, "body_too_large": 1, "internal": 1, "invalid_request": 0,
	} {
		if v := metricValue(t, reg, "flashorder_orders_refused_total", map[string]string{"code": name}); v != want {
			t.Errorf("orders_refused_total{code=%q} = %v, want %v", name, v, want)
		}
	}
	if v := metricValue(t, reg, "flashorder_orders_created_total", nil); v != 1 {
		t.Errorf("orders_created_total = %v, want 1 (the held order)", v)
	}
	for code, want := range map[string]float64{"201": 1, "503": 1, "413": 1, "500": 1} {
		if v := metricValue(t, reg, "flashorder_http_requests_total", ordersWith(code)); v != want {
			t.Errorf("http_requests_total{code=%q} = %v, want %v", code, v, want)
		}
	}
	if v := metricValue(t, reg, "flashorder_http_request_duration_seconds", map[string]string{"route": "/api/v1/orders", "method": "POST"}); v != 4 {
		t.Errorf("request durations observed: %v, want 4", v)
	}
}

// TestRouteMetrics checks the cached label children: unmatched routes, a
// method outside the standard ones, and that a route shows no series before
// its first request.
func TestRouteMetrics(t *testing.T) {
	s := newServer(orderhttp.Config{Store: benchStore{}}, instantPlacer{}, nil)
	h := s.Handler()
	for _, m := range []string{"GET", "GET", "BREW"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(m, "/no/such/route", nil))
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	reg := s.Registry()
	for _, tc := range []struct {
		route, method, code string
		want                float64
	}{
		{"unmatched", "GET", "404", 2}, {"unmatched", "other", "404", 1}, {"unmatched", "BREW", "404", 0}, {"/healthz", "GET", "200", 1}, {"/readyz", "GET", "200", 0},
	} {
		if v := metricValue(t, reg, "flashorder_http_requests_total", map[string]string{"route": tc.route, "method": tc.method, "code": tc.code}); v != tc.want {
			t.Errorf("http_requests_total{%s %s %s} = %v, want %v", tc.route, tc.method, tc.code, v, tc.want)
		}
	}
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() != "flashorder_http_request_duration_seconds" {
			continue
		}
		if n := len(f.GetMetric()); n != 3 {
			t.Errorf("duration series: %d, want 3 (unmatched GET and BREW, /healthz GET)", n)
		}
	}
}

// TestOrderAnswerHeaders checks the headers of a created order, of its
// replay and of a refusal.
func TestOrderAnswerHeaders(t *testing.T) {
	s := newServer(orderhttp.Config{Store: benchStore{}}, instantPlacer{}, nil)
	h := s.Handler()
	check := func(w *httptest.ResponseRecorder, status int, replayed string) {
		t.Helper()
		hd := w.Header()
		if w.Code != status || hd.Get("Content-Type") != "application/json; charset=utf-8" ||
			hd.Get("Content-Length") != strconv.Itoa(w.Body.Len()) || hd.Get(orderhttp.RequestIDHeader) == "" ||
			hd.Get(orderhttp.ReplayedHeader) != replayed {
			t.Errorf("answer %d %s, headers %v", w.Code, w.Body, hd)
		}
		if status == 201 && hd.Get("Location") != "/api/v1/orders/01J8ZQ4V6Y3K2M5N7P9R1T3W5X" {
			t.Errorf("Location %q", hd.Get("Location"))
		}
		for k, v := range hd {
			if len(v) != 1 {
				t.Errorf("header %s: %q", k, v)
			}
		}
	}
	first := post(h, "k-1", "u-1")
	check(first, 201, "")
	again := post(h, "k-1", "u-1")
	check(again, 201, "true")
	if again.Body.String() != first.Body.String() {
		t.Errorf("replay %s, first %s", again.Body, first.Body)
	}
	check(post(h, "", "u-1"), 201, "")
	check(post(h, "k-1", "u-2"), 422, "")
	check(post(h, "", "bad user"), 400, "")

	req := httptest.NewRequest("POST", "/api/v1/orders", strings.NewReader(benchStringBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(orderhttp.RequestIDHeader, "trace-1")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if got := w.Header().Get(orderhttp.RequestIDHeader); got != "trace-1" || w.Code != http.StatusCreated {
		t.Errorf("request id %q, status %d", got, w.Code)
	}
}

var benchStringBody = string(benchBody)

// TestClientGoneNotLoggedAsError: an order whose client went away before it
// was placed answers 503 to nobody, and is logged at debug level, not as a
// server error (under load thousands leave at once).
func TestClientGoneNotLoggedAsError(t *testing.T) {
	var logs bytes.Buffer
	s := newServer(orderhttp.Config{Store: benchStore{}, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		placerFunc(func(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
			<-ctx.Done()
			return nil, &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the request ended", Err: ctx.Err()}
		}), nil)
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("POST", "/api/v1/orders", strings.NewReader(`{"user_id":"u-1","items":[{"sku":"a","quantity":1}]}`)).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	time.AfterFunc(10*time.Millisecond, cancel)
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req)
	if w.Code != 503 {
		t.Fatalf("client gone: %d %s", w.Code, w.Body)
	}
	if strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "level=DEBUG") {
		t.Errorf("client gone logged as:\n%s\nwant one debug line, no error", logs.String())
	}
}
