package loadtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/fakeorderd"
	"github.com/flashorder/flashorder/loadtest"
	"github.com/flashorder/flashorder/loadtest/report"
)

// TestPlanDrop: the arrivals ramp up over the lead and peak at T0, never
// after it; the clocks' errors stay within the skew, spread evenly around 0.
func TestPlanDrop(t *testing.T) {
	const users, lead, skew = 10_000, 10 * time.Second, time.Second
	plan := loadtest.PlanDrop(users, lead, skew, rand.New(rand.NewPCG(1, 2)))
	if len(plan) != users {
		t.Fatalf("%d users planned, want %d", len(plan), users)
	}
	var bins [10]int // one a second of the lead
	var sum time.Duration
	minSkew, maxSkew := skew, -skew
	for i, u := range plan {
		if u.Arrive < -lead || u.Arrive > 0 {
			t.Fatalf("user %d arrives at T0%+v, outside the lead", i, u.Arrive)
		}
		if i > 0 && u.Arrive < plan[i-1].Arrive {
			t.Fatalf("user %d arrives before user %d", i, i-1)
		}
		bins[int((u.Arrive+lead)/time.Second)]++
		if u.Skew < -skew || u.Skew > skew {
			t.Fatalf("user %d's clock is off by %v, beyond ±%v", i, u.Skew, skew)
		}
		minSkew, maxSkew = min(minSkew, u.Skew), max(maxSkew, u.Skew)
		sum += u.Skew
	}
	for i := 1; i < len(bins); i++ {
		if bins[i] <= bins[i-1] {
			t.Errorf("arrivals per second of the lead %v: not rising toward T0", bins)
			break
		}
	}
	// A density rising in a straight line: the last second holds 19%, the
	// first 1%.
	if bins[9] < 1850 || bins[9] > 1950 || bins[0] < 80 || bins[0] > 120 {
		t.Errorf("arrivals per second of the lead %v: want about 100 in the first and 1,900 in the last", bins)
	}
	if minSkew > -skew+time.Millisecond || maxSkew < skew-time.Millisecond || sum.Abs() > time.Millisecond {
		t.Errorf("skews from %v to %v, summing to %v: want the whole ±%v, even around 0", minSkew, maxSkew, sum, skew)
	}
	// The same clocks, dealt out in another order with another seed.
	other := loadtest.PlanDrop(users, lead, skew, rand.New(rand.NewPCG(3, 4)))
	same := 0
	for i := range plan {
		if plan[i].Skew == other[i].Skew {
			same++
		}
	}
	if same > users/100 {
		t.Errorf("%d of %d users have the same skew under another seed: the skews are not dealt at random", same, users)
	}
	for _, u := range loadtest.PlanDrop(100, lead, 0, rand.New(rand.NewPCG(1, 2))) {
		if u.Skew != 0 {
			t.Fatalf("no skew asked, got %v", u.Skew)
		}
	}
}

// windowed puts orderd's sale window in front of a fakeorderd, which has
// none: it keeps each product's starts_at and ends_at from its PUT and
// refuses orders outside them, 409 not_started with Retry-After (whole
// seconds, rounded up) and 409 sale_ended, judged by the time the order
// arrives, before the fake stamps its created_at. It counts orderbench's
// GETs of the product page (not the progress line's) and the orders that
// carried an Idempotency-Key seen before.
type windowed struct {
	next    http.Handler
	mu      sync.Mutex
	windows map[string][2]time.Time
	pages   atomic.Int64
	keys    sync.Map
	reused  atomic.Int64
}

func newWindowed(fault fakeorderd.Fault) *windowed {
	return &windowed{next: fakeorderd.New(fault), windows: map[string][2]time.Time{}}
}

func (f *windowed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	switch {
	case r.Method == http.MethodPut:
		var in flashorder.ProductInput
		if json.Unmarshal(body, &in) == nil {
			if p, err := in.Product(strings.TrimPrefix(r.URL.Path, "/api/v1/products/")); err == nil && p.StartsAt != nil {
				f.mu.Lock()
				f.windows[p.SKU] = [2]time.Time{*p.StartsAt, *p.EndsAt}
				f.mu.Unlock()
			}
		}
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/products/") && r.UserAgent() == "orderbench":
		f.pages.Add(1)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/orders":
		if _, seen := f.keys.LoadOrStore(r.Header.Get("Idempotency-Key"), true); seen {
			f.reused.Add(1)
		}
		var req flashorder.OrderRequest
		_ = json.Unmarshal(body, &req)
		now := time.Now()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, it := range req.Items {
			win, ok := f.windows[it.SKU]
			switch {
			case !ok:
			case now.Before(win[0]):
				secs := (win[0].Sub(now) + time.Second - 1) / time.Second
				w.Header().Set("Retry-After", fmt.Sprint(max(secs, 1)))
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusConflict)
				fmt.Fprintf(w, `{"error":{"code":"not_started","message":"not yet","starts_at":%q}}`+"\n", win[0].Format(time.RFC3339Nano))
				return
			case !now.Before(win[1]):
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusConflict)
				fmt.Fprintln(w, `{"error":{"code":"sale_ended","message":"over"}}`)
				return
			}
		}
	}
	f.next.ServeHTTP(w, r)
}

// dropConfig is a small drop against url: 300 users for 30 units, one each,
// arriving over 1s with clocks off by up to 500ms, refreshing for 300ms
// after sold_out.
func dropConfig(url string) loadtest.Config {
	return loadtest.Config{
		URLs:        []string{url},
		AdminToken:  "t",
		Concurrency: 16,
		Duration:    20 * time.Second,
		Scenario: loadtest.Scenario{Stock: 30, PerUserLimit: 1, Users: 300, Lead: time.Second, ClockSkew: 500 * time.Millisecond,
			After: 300 * time.Millisecond, Refresh: 100 * time.Millisecond},
	}
}

// TestDrop runs a drop against a fake with orderd's sale window, with both
// HTTP clients: no order before the start, the stock sold to the last unit,
// every user done (bought or told sold out), no error, the audit passes;
// the page was loaded by every user and again by those who refreshed;
// refusals were retried with new keys; answers by kind add up over the
// buckets and no 201 lies in a bucket that ended before T0.
func TestDrop(t *testing.T) {
	for _, std := range []bool{false, true} {
		t.Run(map[bool]string{false: "raw", true: "net-http"}[std], func(t *testing.T) {
			fake := newWindowed(fakeorderd.None)
			srv := httptest.NewServer(fake)
			defer srv.Close()
			cfg := dropConfig(srv.URL)
			cfg.StdHTTP = std
			res, err := loadtest.Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			d, w, pg := res.Drop, res.Audit.Window, res.Page
			if d == nil || w == nil || pg == nil || res.Mode != "drop" {
				t.Fatalf("mode %s, drop %+v, window %+v, page %+v", res.Mode, d, w, pg)
			}
			if !res.Audit.OK || w.BeforeStart != 0 || w.AfterEnd != 0 || w.Orders != 30 || !w.SoldOutChecked || !w.SoldOut {
				t.Errorf("audit %+v, window %+v", res.Audit, w)
			}
			if w.First.Before(d.StartsAt) || !d.StartsAt.Equal(w.StartsAt) {
				t.Errorf("first order created at %v, starts_at %v (window %v)", w.First, d.StartsAt, w.StartsAt)
			}
			if d.Bought != 30 || d.SoldOut != 270 || d.Unfinished != 0 || d.Limited+d.Ended+d.Refused != 0 {
				t.Errorf("users: %+v", d)
			}
			if res.Errors != 0 || pg.Errors != 0 || res.Orders != 30 {
				t.Errorf("errors %d, page errors %d, orders %d", res.Errors, pg.Errors, res.Orders)
			}
			// Every user loaded the page once on arrival, and once more
			// before each order it sent again after sold_out.
			var soldOut, notStarted int64
			for _, a := range res.Answers {
				switch a.Answer.Code {
				case loadtest.CodeSoldOut:
					soldOut += a.Count
				case loadtest.CodeNotStarted:
					notStarted += a.Count
				}
			}
			if want := int64(300) + soldOut - 270; pg.Requests != want || fake.pages.Load() < want {
				t.Errorf("%d page GETs (the fake saw %d), want %d: 300 arrivals and %d refreshes; answers %v", pg.Requests, fake.pages.Load(),
					want, soldOut-270, res.Answers)
			}
			// A not_started answer is an order the fake judged before T0,
			// so orderbench sent it before T0 too.
			if notStarted > d.EarlyOrders {
				t.Errorf("%d not_started answers, but %d orders sent before T0", notStarted, d.EarlyOrders)
			}
			if fake.reused.Load() != 0 {
				t.Errorf("%d orders reused a refused order's key", fake.reused.Load())
			}
			checkKinds(t, res)
		})
	}
}

// checkKinds checks that the buckets' answers by kind add up to the run's,
// and that no 201 lies in a bucket that ended before T0.
func checkKinds(t *testing.T, res *loadtest.Result) {
	t.Helper()
	want := map[string]int64{}
	for _, a := range res.Answers {
		want[loadtest.KindOf(a.Answer)] += a.Count
	}
	got := map[string]int64{}
	for _, iv := range res.Series {
		byKind := iv.ByKind()
		for k, n := range byKind {
			got[k] += n
		}
		if byKind[loadtest.KindOrder] > 0 && iv.T < res.Drop.Lead-0.01 {
			t.Errorf("%d orders in the bucket ending at %.2fs, before T0 at %.2fs", byKind[loadtest.KindOrder], iv.T, res.Drop.Lead)
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("kind %q: %d over the buckets, %d in the run", k, got[k], n)
		}
	}
}

// TestDropAuditCatchesEarlyOrders: a server without the sale window takes
// the orders of users whose clocks run ahead; the audit reports each as an
// order before the start and the headline says how many there were.
func TestDropAuditCatchesEarlyOrders(t *testing.T) {
	srv := httptest.NewServer(fakeorderd.New(fakeorderd.None))
	defer srv.Close()
	cfg := dropConfig(srv.URL)
	// Clocks up to 2s off over a 1s lead: the half of the users whose
	// clocks run ahead order up to 2s before T0, a quarter as soon as they
	// have the page.
	cfg.Scenario.Users, cfg.Scenario.Stock, cfg.Scenario.ClockSkew = 40, 1000, 2*time.Second
	res, err := loadtest.Run(context.Background(), cfg)
	if !errors.Is(err, loadtest.ErrAuditFailed) {
		t.Fatalf("run returned %v, want ErrAuditFailed", err)
	}
	w := res.Audit.Window
	if w == nil || w.BeforeStart == 0 || !w.First.Before(w.StartsAt) {
		t.Fatalf("window %+v: want orders before the start", w)
	}
	if v := strings.Join(res.Audit.Violations, "\n"); !strings.Contains(v, "sale window: order ") || !strings.Contains(v, "before starts_at") {
		t.Errorf("violations do not name the early orders:\n%s", v)
	}
	if h := report.Headline(res); !strings.Contains(h, fmt.Sprintf("%d orders before the start", w.BeforeStart)) {
		t.Errorf("headline %q does not count the orders before the start", h)
	}
	// The demand (40 units) is under the stock: sold out is not asked.
	if w.SoldOutChecked {
		t.Errorf("window %+v: sold out checked with demand under the stock", w)
	}
}

// TestByKind buckets answers into the drop's kinds.
func TestByKind(t *testing.T) {
	iv := loadtest.Interval{Codes: map[string]int64{
		"201": 3, "409 not_started": 2, "409 sold_out": 5, "409 limit_exceeded": 1, "409 sale_ended": 1,
		"503 overloaded": 1, "503 unavailable": 2, "500 internal": 1, "timeout": 1, "connection_refused": 1, "transport_error": 1,
		"400 invalid_request": 1, "429 rate_limited": 1, "409 request_in_progress": 1, "cancelled": 4,
	}}
	want := map[string]int64{loadtest.KindOrder: 3, loadtest.KindNotStarted: 2, loadtest.KindSoldOut: 5, loadtest.KindLimit: 1,
		loadtest.KindSaleEnded: 1, loadtest.Kind5xx: 4, loadtest.KindTransport: 3, loadtest.KindOther4xx: 3}
	got := iv.ByKind()
	if len(got) != len(want) {
		t.Errorf("ByKind = %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("kind %q: %d, want %d", k, got[k], n)
		}
	}
	if len(loadtest.Kinds()) != len(want) {
		t.Errorf("Kinds() = %v, want the %d kinds", loadtest.Kinds(), len(want))
	}
}

// TestDropConfig: a drop brings its own load and sells one SKU.
func TestDropConfig(t *testing.T) {
	for _, tc := range []struct {
		change func(*loadtest.Config)
		want   string
	}{
		{func(c *loadtest.Config) { c.Rate = 100 }, "a rate"},
		{func(c *loadtest.Config) { c.Requests, c.Warmup = 10, time.Second }, "a request count, a warmup"},
		{func(c *loadtest.Config) { c.Scenario.SKUs = 3 }, "one SKU"},
		{func(c *loadtest.Config) { c.Scenario.Users = 0 }, "needs users"},
		{func(c *loadtest.Config) { c.Scenario.Lead = 0 }, "describe a drop"},
	} {
		cfg := dropConfig("http://127.0.0.1:1")
		tc.change(&cfg)
		if _, err := loadtest.Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error with %q, got %v", tc.want, err)
		}
	}
}
