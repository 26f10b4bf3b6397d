package http_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestOrderExpiresAt drives the API with the clocks of the strategy and of
// the lifecycle set by hand: an order of a product with "payment_window":"1m"
// answers expires_at = created_at + 1m (in the 201, the order page and the
// list, all fitting openapi.json), an order without a windowed product has
// no expires_at, a payment at expires_at succeeds and one a microsecond
// later is refused 409 invalid_state and leaves the order expired, while the
// order without a window is still paid then.
func TestOrderExpiresAt(t *testing.T) {
	ctx := context.Background()
	db, err := gormdb.Open(ctx, testenv.SQLiteURL(t), gormdb.Options{})
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC)
	var now atomic.Pointer[time.Time]
	setNow := func(d time.Duration) { at := t0.Add(d); now.Store(&at) }
	setNow(0)
	clock := func() time.Time { return *now.Load() }
	row := checkout.NewRow(db)
	row.Now = clock
	lc := checkout.NewLifecycle(db)
	lc.Now = clock
	srv := newServer(orderhttp.Config{Store: db, AdminToken: adminToken, Lifecycle: lc, Now: clock}, row, nil)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	a := newAPICheck(t, ts.URL)
	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	const get, put, post = http.MethodGet, http.MethodPut, http.MethodPost

	a.call(put, "/api/v1/products/drop-1", admin, `{"name":"Drop","price_cents":100,"stock":5,"payment_window":"1m"}`, 200, true)
	a.call(put, "/api/v1/products/plain-1", admin, `{"name":"Plain","price_cents":50,"stock":5}`, 200, true)
	type order struct {
		ID        string  `json:"id"`
		Status    string  `json:"status"`
		CreatedAt string  `json:"created_at"`
		ExpiresAt *string `json:"expires_at"`
	}
	decode := func(body []byte) order {
		t.Helper()
		var o order
		if err := json.Unmarshal(body, &o); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return o
	}
	const wantCreated, wantExpires = "2026-12-01T10:00:00.123456Z", "2026-12-01T10:01:00.123456Z"
	check := func(o order, wantExpires string) {
		t.Helper()
		got := ""
		if o.ExpiresAt != nil {
			got = *o.ExpiresAt
		}
		if o.CreatedAt != wantCreated || got != wantExpires {
			t.Errorf("order %s: created_at %s expires_at %q, want %s and %q", o.ID, o.CreatedAt, got, wantCreated, wantExpires)
		}
	}
	drop := decode(a.call(post, "/api/v1/orders", nil, `{"user_id":"u-1","items":[{"sku":"drop-1","quantity":1}]}`, 201, true))
	check(drop, wantExpires)
	cart := decode(a.call(post, "/api/v1/orders", nil, `{"user_id":"u-2","items":[{"sku":"plain-1","quantity":1},{"sku":"drop-1","quantity":1}]}`, 201, true))
	check(cart, wantExpires)
	plain := decode(a.call(post, "/api/v1/orders", nil, `{"user_id":"u-3","items":[{"sku":"plain-1","quantity":1}]}`, 201, true))
	check(plain, "")
	check(decode(a.call(get, "/api/v1/orders/"+drop.ID, nil, "", 200, true)), wantExpires)
	check(decode(a.call(get, "/api/v1/orders/"+plain.ID, nil, "", 200, true)), "")
	var page struct{ Orders []order }
	if err := json.Unmarshal(a.call(get, "/api/v1/orders?user_id=u-2", nil, "", 200, true), &page); err != nil || len(page.Orders) != 1 {
		t.Fatalf("orders of u-2: %+v, %v", page, err)
	}
	check(page.Orders[0], wantExpires)

	setNow(time.Minute)
	if o := decode(a.call(post, "/api/v1/orders/"+cart.ID+"/pay", admin, "", 200, true)); o.Status != "paid" {
		t.Errorf("payment at expires_at: %+v", o)
	}
	setNow(time.Minute + time.Microsecond)
	a.call(post, "/api/v1/orders/"+drop.ID+"/pay", admin, "", 409, true)
	if o := decode(a.call(get, "/api/v1/orders/"+drop.ID, nil, "", 200, true)); o.Status != "expired" {
		t.Errorf("order paid after expires_at is %s, want expired", o.Status)
	}
	if o := decode(a.call(post, "/api/v1/orders/"+plain.ID+"/pay", admin, "", 200, true)); o.Status != "paid" {
		t.Errorf("payment of the order without a window at t0+1m: %+v", o)
	}
}
