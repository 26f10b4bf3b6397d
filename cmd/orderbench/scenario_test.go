package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/loadtest"
)

// parseScenario parses args as run, compare and demo do and returns the
// resulting scenario.
func parseScenario(t *testing.T, args ...string) (loadtest.Scenario, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg loadtest.Config
	var out outputs
	loadFlags(fs, &cfg, &out)
	err := parseFlags(fs, args, &cfg, &out)
	return cfg.Scenario, err
}

func named(t *testing.T, name string) loadtest.Scenario {
	t.Helper()
	s, err := loadtest.NamedScenario(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestScenarioFlag: --scenario gives the named scenario; scenario flags given
// with it, before or after, override its values; without it the flags'
// defaults are as before (one hot SKU, a key on every order).
func TestScenarioFlag(t *testing.T) {
	uniform := named(t, "catalogue")
	uniform.Zipf = 0
	sale := named(t, "sale")
	sale.Users, sale.PerUserLimit, sale.NoKeys, sale.SKUPrefix = 50, 2, true, "x-"
	hotKeyed := named(t, "hot")
	hotKeyed.NoKeys = false
	for _, tc := range []struct {
		args []string
		want loadtest.Scenario
	}{
		{[]string{"--scenario", "hot"}, named(t, "hot")},
		{[]string{"--scenario=catalogue"}, named(t, "catalogue")},
		{[]string{"--scenario", "carts"}, named(t, "carts")},
		{[]string{"--scenario", "keys", "--concurrency", "9"}, named(t, "keys")},
		{[]string{"--scenario", "sale"}, named(t, "sale")},
		{[]string{"--scenario", "catalogue", "--zipf", "0"}, uniform},
		{[]string{"--zipf", "0", "--scenario", "catalogue"}, uniform},
		{[]string{"--scenario", "hot", "--keys"}, hotKeyed},
		{[]string{"--users", "50", "--scenario", "sale", "--per-user-limit", "2", "--keys=false", "--sku-prefix", "x-"}, sale},
		{nil, loadtest.Scenario{SKUs: 1, SKUPrefix: "bench-", Stock: 1_000_000, PriceCents: 1999, MultiItems: 2, Quantity: 1}},
		{[]string{"--keys=false", "--skus", "3"}, loadtest.Scenario{SKUs: 3, SKUPrefix: "bench-", Stock: 1_000_000, PriceCents: 1999,
			MultiItems: 2, Quantity: 1, NoKeys: true}},
	} {
		got, err := parseScenario(t, tc.args...)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%v:\n got %+v\nwant %+v", tc.args, got, tc.want)
		}
	}
}

// TestScenarioUnknown: an unknown name is an error naming the valid ones, in
// every command, before anything starts.
func TestScenarioUnknown(t *testing.T) {
	for _, cmd := range []string{"run", "compare", "demo"} {
		_, err := runArgs(t, cmd, "--scenario", "flashsale")
		if err == nil {
			t.Errorf("%s --scenario flashsale: no error", cmd)
			continue
		}
		for _, want := range append([]string{`"flashsale"`}, loadtest.ScenarioNames()...) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not name %s", cmd, err, want)
			}
		}
	}
	if _, err := parseScenario(t, "--scenario", "sale", "--keys=maybe"); err == nil {
		t.Errorf("--keys=maybe: no error")
	}
}

// orderWire counts the order requests that pass through it: all of them,
// those with an Idempotency-Key, and carts (several distinct SKUs).
type orderWire struct {
	orders, keyed, carts, badCarts atomic.Int64
}

// proxy returns a server that counts the order requests and forwards every
// request to target.
func (c *orderWire) proxy(t *testing.T, target string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/api/v1/orders" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			c.orders.Add(1)
			if r.Header.Get("Idempotency-Key") != "" {
				c.keyed.Add(1)
			}
			var req flashorder.OrderRequest
			if err := json.Unmarshal(body, &req); err == nil && len(req.Items) > 1 {
				c.carts.Add(1)
				if req.Validate() != nil {
					c.badCarts.Add(1)
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestScenarioSaleEndToEnd runs `orderbench run --scenario sale` against an
// embedded orderd (SQLite, batch strategy) through a counting proxy: the
// audit passes, carts and keyed orders reached the server, and on a pool of
// 40 users (instead of 10,000, so that a short run reaches the limit) the
// per-user limit refuses some orders while most succeed.
func TestScenarioSaleEndToEnd(t *testing.T) {
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var seen orderWire
	proxy := seen.proxy(t, e.URL)
	js := filepath.Join(t.TempDir(), "sale.json")
	out, err := runArgs(t, "run", "--url", proxy.URL, "--admin-token", e.AdminToken, "--scenario", "sale",
		"--users", "40", "--requests", "600", "--concurrency", "8", "--quiet", "--json", js)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out, "scenario   sale: 100 SKUs (Zipf 1.1)") {
		t.Errorf("the summary does not name the scenario")
	}
	var res loadtest.Result
	b, _ := os.ReadFile(js)
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Audit == nil || !res.Audit.OK || res.Requests != 600 || len(res.Audit.SKUs) != 100 {
		t.Fatalf("requests %d, audit %+v", res.Requests, res.Audit)
	}
	if sc := res.Config.Scenario; sc.Name != "sale" || sc.Users != 40 || sc.PerUserLimit != 3 || sc.NoKeys {
		t.Errorf("scenario in the results: %+v", sc)
	}
	if n := seen.orders.Load(); seen.keyed.Load() != n || n < 600 {
		t.Errorf("%d order requests, %d with an Idempotency-Key: want every one keyed", n, seen.keyed.Load())
	}
	if c := seen.carts.Load(); c < 60 || c > 200 || seen.badCarts.Load() > 0 {
		t.Errorf("%d carts of %d orders (%d invalid), want about 20%%", c, seen.orders.Load(), seen.badCarts.Load())
	}
	var limited int64
	for _, a := range res.Answers {
		if a.Answer.Code == flashorder.ELIMITEXCEEDED {
			limited += a.Count
		}
	}
	if limited == 0 || limited > res.Requests/2 || res.Orders < res.Requests/2 {
		t.Errorf("%d limit_exceeded and %d orders of %d requests, want some refusals and most succeeding: %+v",
			limited, res.Orders, res.Requests, res.Answers)
	}
}

// TestDemoScenario: the demo runs a named scenario instead of its own sale.
func TestDemoScenario(t *testing.T) {
	out, err := runArgs(t, "demo", "--scenario", "carts", "--requests", "300", "--concurrency", "8", "--quiet")
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	for _, want := range []string{"scenario carts: 100 SKUs (Zipf 1.1) with stock 10000000", "no Idempotency-Key", "audit: OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
