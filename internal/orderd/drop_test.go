package orderd

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// answer is one HTTP answer of the drop tests.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// code returns the answer's error code, "" for a success.
func (a answer) code() string {
	var eb struct{ Error struct{ Code string } }
	_ = json.Unmarshal(a.body, &eb)
	return eb.Error.Code
}

// call sends one request with the given headers and returns the answer.
func call(t *testing.T, method, url string, header map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: transport, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

// putDrop PUTs a product with a sale window through base; a zero time
// leaves that bound out.
func putDrop(t *testing.T, base, sku string, stock, limit int64, starts, ends time.Time, extra string) answer {
	t.Helper()
	body := fmt.Sprintf(`{"name":"Drop %s","price_cents":4999,"stock":%d,"per_user_limit":%d`, sku, stock, limit)
	if !starts.IsZero() {
		body += `,"starts_at":"` + starts.Format(time.RFC3339Nano) + `"`
	}
	if !ends.IsZero() {
		body += `,"ends_at":"` + ends.Format(time.RFC3339Nano) + `"`
	}
	body += extra + "}"
	return call(t, "PUT", base+"/api/v1/products/"+sku, map[string]string{"Authorization": "Bearer " + adminToken}, body)
}

// buy sends a one-unit order of sku for user through base.
func buy(t *testing.T, base, user, sku string) answer {
	t.Helper()
	return call(t, "POST", base+"/api/v1/orders", nil, fmt.Sprintf(`{"user_id":%q,"items":[{"sku":%q,"quantity":1}]}`, user, sku))
}

// orderID returns the id of the order a 201 answer holds.
func orderID(t *testing.T, a answer) string {
	t.Helper()
	var o struct{ ID string }
	if a.status != 201 || json.Unmarshal(a.body, &o) != nil || o.ID == "" {
		t.Fatalf("not a created order: %d %s", a.status, a.body)
	}
	return o.ID
}

// productPage is what GET /api/v1/products/{sku} shows of a drop.
type productPage struct {
	Stock         int64     `json:"stock"`
	Sold          int64     `json:"sold"`
	StartsAt      time.Time `json:"starts_at"`
	EndsAt        time.Time `json:"ends_at"`
	PaymentWindow string    `json:"payment_window"`
	Status        string    `json:"status"`
	ServerTime    time.Time `json:"server_time"`
}

func page(t *testing.T, base, sku string) (productPage, answer) {
	t.Helper()
	a := call(t, "GET", base+"/api/v1/products/"+sku, nil, "")
	var p productPage
	if a.status != 200 || json.Unmarshal(a.body, &p) != nil {
		t.Fatalf("product page of %s: %d %s", sku, a.status, a.body)
	}
	return p, a
}

// TestOrderdDrop runs a drop end to end on two orderd sharing PostgreSQL and
// Redis, with caches that would never expire during the test (1m): what
// each instance learns of another's changes comes from the pub/sub
// announcements and the shared sold-out marks. Before the start: the
// product page counts down (upcoming, server_time, ETag, 304) and orders are
// refused not_started with Retry-After and starts_at, by both instances;
// bad windows are refused and change nothing; a start moved earlier through
// one instance opens the sale on the other; after the sell-out a user who
// holds the limit gets limit_exceeded and the others sold_out, answered by
// the gate; a cancel and a restock sell again on both; after the end,
// sale_ended.
func TestOrderdDrop(t *testing.T) {
	dbURL, r := redisSetup(t)
	args := []string{"--idempotency", r.URL, "--product-cache-ttl", "1m", "--sold-out-ttl", "1m"}
	_, a := startOrderd(t, dbURL, args...)
	_, b := startOrderd(t, dbURL, args...)
	start := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	end := start.Add(time.Hour)

	if p := putDrop(t, a.BaseURL, "drop-1", 3, 1, start, end, `,"payment_window":"5m"`); p.status != 200 {
		t.Fatalf("put the drop: %d %s", p.status, p.body)
	}
	for _, base := range []string{a.BaseURL, b.BaseURL} {
		p, ans := page(t, base, "drop-1")
		if p.Status != "upcoming" || !p.StartsAt.Equal(start) || !p.EndsAt.Equal(end) || p.PaymentWindow != "5m0s" || p.Stock != 3 {
			t.Fatalf("product page before the start: %s", ans.body)
		}
		if d := time.Since(p.ServerTime); d < -time.Second || d > 5*time.Second {
			t.Fatalf("server_time %v is %v from the test's clock", p.ServerTime, d)
		}
		etag := ans.header.Get("ETag")
		if etag == "" || ans.header.Get("Cache-Control") != "public, max-age=1" {
			t.Fatalf("product page headers: %v", ans.header)
		}
		if nm := call(t, "GET", base+"/api/v1/products/drop-1", map[string]string{"If-None-Match": etag}, ""); nm.status != 304 || len(nm.body) != 0 {
			t.Fatalf("If-None-Match with the current tag: %d %q", nm.status, nm.body)
		}
		for i := range 20 {
			ans := buy(t, base, fmt.Sprintf("early-%d", i), "drop-1")
			if ans.status != 409 || ans.code() != "not_started" {
				t.Fatalf("order before the start: %d %s", ans.status, ans.body)
			}
			var eb struct {
				Error struct {
					StartsAt time.Time `json:"starts_at"`
				}
			}
			if err := json.Unmarshal(ans.body, &eb); err != nil || !eb.Error.StartsAt.Equal(start) {
				t.Fatalf("not_started names the start: %s", ans.body)
			}
			if ra, err := strconv.Atoi(ans.header.Get("Retry-After")); err != nil || ra < 3500 || ra > 3601 {
				t.Fatalf("Retry-After %q, want the seconds until the start (about 3600)", ans.header.Get("Retry-After"))
			}
		}
	}
	if n, _, _ := testenv.MetricSum(a.BaseURL, "flashorder_gate_refusals_total"); n < 20 {
		t.Fatalf("the gate refused %v orders before the start on A, want the 20", n)
	}

	// Bad windows: 400, nothing changed.
	for _, extra := range []string{`,"starts_at":"tomorrow"`, `,"ends_at":"2026-13-01T00:00:00Z"`, `,"payment_window":"1s"`,
		`,"payment_window":"5 minutes"`, `,"payment_window":"25h"`, `,"starts_at":"20261-01-01T00:00:00Z"`} {
		if ans := putDrop(t, a.BaseURL, "drop-1", 100, 0, time.Time{}, time.Time{}, extra); ans.status != 400 || ans.code() != "invalid_request" {
			t.Fatalf("bad input %s: %d %s", extra, ans.status, ans.body)
		}
	}
	if ans := putDrop(t, a.BaseURL, "drop-1", 100, 0, end, start, ""); ans.status != 400 {
		t.Fatalf("a window that ends before it starts: %d %s", ans.status, ans.body)
	}
	if p, ans := page(t, b.BaseURL, "drop-1"); p.Stock != 3 || !p.StartsAt.Equal(start) || p.Status != "upcoming" {
		t.Fatalf("after the bad inputs: %s", ans.body)
	}

	// The start moved earlier through B: A opens at once (its cache would
	// keep the old window for a minute).
	start = time.Now().Add(-time.Second).UTC().Truncate(time.Millisecond)
	if ans := putDrop(t, b.BaseURL, "drop-1", 3, 1, start, end, ""); ans.status != 200 {
		t.Fatalf("move the start: %d %s", ans.status, ans.body)
	}
	var first answer
	testenv.WaitFor(t, "A sees the start moved through B", 5*time.Second, func() bool {
		first = buy(t, a.BaseURL, "buyer-0", "drop-1")
		return first.status == 201
	})
	for i, base := range []string{b.BaseURL, a.BaseURL} {
		if ans := buy(t, base, fmt.Sprintf("buyer-%d", i+1), "drop-1"); ans.status != 201 {
			t.Fatalf("buyer %d: %d %s", i+1, ans.status, ans.body)
		}
	}
	// Sold out: a buyer holds the limit (limit_exceeded), the others do not
	// (sold_out); both instances answer from their sold-out marks.
	for _, base := range []string{a.BaseURL, b.BaseURL} {
		for i := range 30 {
			if ans := buy(t, base, fmt.Sprintf("late-%d", i), "drop-1"); ans.status != 409 || ans.code() != "sold_out" {
				t.Fatalf("after the sell-out: %d %s", ans.status, ans.body)
			}
		}
		if ans := buy(t, base, "buyer-1", "drop-1"); ans.status != 409 || ans.code() != "limit_exceeded" {
			t.Fatalf("a buyer at the limit after the sell-out: %d %s", ans.status, ans.body)
		}
		if p, ans := page(t, base, "drop-1"); p.Status != "sold_out" || p.Stock != 0 || p.Sold != 3 {
			t.Fatalf("product page after the sell-out: %s", ans.body)
		}
	}
	for _, base := range []string{a.BaseURL, b.BaseURL} {
		if n, _, _ := testenv.MetricSum(base, "flashorder_orders_refused_total"); n < 31 {
			t.Fatalf("%v refusals counted", n)
		}
	}

	// A cancel through A sells again at once on A, and on B through the
	// announcement and the shared mark (its own mark would last a minute).
	if ans := call(t, "POST", a.BaseURL+"/api/v1/orders/"+orderID(t, first)+"/cancel", nil, ""); ans.status != 200 {
		t.Fatalf("cancel: %d %s", ans.status, ans.body)
	}
	again := buy(t, a.BaseURL, "after-cancel-a", "drop-1")
	if again.status != 201 {
		t.Fatalf("after the cancel, through A: %d %s", again.status, again.body)
	}
	if ans := call(t, "POST", a.BaseURL+"/api/v1/orders/"+orderID(t, again)+"/cancel", nil, ""); ans.status != 200 {
		t.Fatalf("cancel: %d %s", ans.status, ans.body)
	}
	testenv.WaitFor(t, "B sells the unit cancelled through A", 5*time.Second, func() bool {
		return buy(t, b.BaseURL, "after-cancel-b", "drop-1").status == 201
	})
	// A restock through B sells again on A.
	if ans := putDrop(t, b.BaseURL, "drop-1", 1, 1, start, end, ""); ans.status != 200 {
		t.Fatalf("restock: %d %s", ans.status, ans.body)
	}
	testenv.WaitFor(t, "A sells the restock made through B", 5*time.Second, func() bool {
		return buy(t, a.BaseURL, "after-restock", "drop-1").status == 201
	})

	// The end moved to now through A: both answer sale_ended.
	if ans := putDrop(t, a.BaseURL, "drop-1", 5, 1, start, time.Now().UTC(), ""); ans.status != 200 {
		t.Fatalf("end the sale: %d %s", ans.status, ans.body)
	}
	for _, base := range []string{a.BaseURL, b.BaseURL} {
		testenv.WaitFor(t, "sale_ended", 5*time.Second, func() bool {
			return buy(t, base, "too-late", "drop-1").code() == "sale_ended"
		})
		if p, ans := page(t, base, "drop-1"); p.Status != "ended" {
			t.Fatalf("product page after the end: %s", ans.body)
		}
	}
	if l := auditLine(t, a, "drop-1"); l.Sold != 4 {
		t.Fatalf("sold %d, want 4 (3, one cancelled, one after the cancel, one restocked)", l.Sold)
	}
}

// TestOrderdDropExpiry checks that stock returned by an expiry (the sweeper,
// behind the gates' backs) sells again within --sold-out-ttl on two
// instances that both hold a sold-out mark for it.
func TestOrderdDropExpiry(t *testing.T) {
	dbURL := testenv.PostgresURL(t)
	args := []string{"--payment-timeout", "1s", "--sweep-interval", "100ms", "--sold-out-ttl", "1s"}
	_, a := startOrderd(t, dbURL, args...)
	_, b := startOrderd(t, dbURL, args...)
	if ans := putDrop(t, a.BaseURL, "exp-1", 2, 1, time.Time{}, time.Time{}, ""); ans.status != 200 {
		t.Fatalf("put: %d %s", ans.status, ans.body)
	}
	for i := range 2 {
		if ans := buy(t, a.BaseURL, fmt.Sprintf("e-%d", i), "exp-1"); ans.status != 201 {
			t.Fatalf("buy %d: %d %s", i, ans.status, ans.body)
		}
	}
	for _, base := range []string{a.BaseURL, b.BaseURL} {
		for range 3 { // the first refusal teaches the gate, the next are its
			if ans := buy(t, base, "e-late", "exp-1"); ans.code() != "sold_out" {
				t.Fatalf("sold out: %d %s", ans.status, ans.body)
			}
		}
	}
	// Both orders expire within about a second; their units sell again on
	// both instances.
	for i, base := range []string{a.BaseURL, b.BaseURL} {
		testenv.WaitFor(t, "expired stock sold again", 10*time.Second, func() bool {
			return buy(t, base, fmt.Sprintf("e-after-%d", i), "exp-1").status == 201
		})
	}
	if l := auditLine(t, a, "exp-1"); l.Sold != 2 {
		t.Fatalf("sold %d after the expiry and two new orders, want 2", l.Sold)
	}
}
