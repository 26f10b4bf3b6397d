package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/loadtest"
)

// readResult reads the JSON results of a run.
func readResult(t *testing.T, path string) *loadtest.Result {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("JSON results: %v", err)
	}
	var res loadtest.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("JSON results: %v", err)
	}
	return &res
}

// checkDrop checks what every healthy drop must end with: no order before
// the start or after the end, the stock sold to the last unit (stock units
// for users who wanted one each), every user answered, no error (orders and
// product page), a passing audit.
func checkDrop(t *testing.T, res *loadtest.Result, users, stock int64) {
	t.Helper()
	d, a := res.Drop, res.Audit
	if d == nil || a == nil || a.Window == nil || res.Page == nil || len(a.SKUs) != 1 {
		t.Fatalf("results: drop %+v, page %+v, audit %+v", d, res.Page, a)
	}
	w, sku := a.Window, a.SKUs[0]
	if !a.OK || w.BeforeStart != 0 || w.AfterEnd != 0 || w.Orders != int(stock) || w.First.Before(w.StartsAt) {
		t.Errorf("audit %+v, window %+v", a, w)
	}
	if !w.SoldOutChecked || !w.SoldOut || sku.Sold != stock || sku.Taken != stock || sku.After.Available != 0 || sku.ClientUnits != stock {
		t.Errorf("not sold exactly: window %+v, stock %+v", w, sku)
	}
	if d.Bought != stock || d.SoldOut != users-stock || d.Unfinished != 0 || d.Limited+d.Ended+d.Refused != 0 {
		t.Errorf("users: %+v", d)
	}
	if res.Errors != 0 || res.Page.Errors != 0 || res.Page.Requests < users {
		t.Errorf("errors %d, page %+v", res.Errors, res.Page)
	}
}

// TestDropEndToEnd runs a small drop, 2,000 users for 200 units after a 2s
// lead, against an embedded orderd on each database (SQLite, and PostgreSQL
// and MariaDB when the services script started them).
func TestDropEndToEnd(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Engine, func(t *testing.T) {
			e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr, "--db", db.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			js := filepath.Join(t.TempDir(), "drop.json")
			out, err := runArgs(t, "run", "--url", e.URL, "--admin-token", e.AdminToken, "--scenario", "drop", "--users", "2000",
				"--stock", "200", "--lead", "2s", "--after", "1s", "--concurrency", "32", "--quiet", "--json", js)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			checkDrop(t, readResult(t, js), 2000, 200)
			for _, want := range []string{"The drop: 200 units for 2,000 users at T0; 0 orders before the start",
				"threshold  errors<1             ok", "sold out to the last unit"} {
				if !strings.Contains(out, want) {
					t.Errorf("the output lacks %q", want)
				}
			}
		})
	}
}

// TestCompareDrop compares two strategies in a drop with the real orderd
// binary: no ceiling row, a drop table whose rows pass, and each strategy's
// drop sold out exactly.
func TestCompareDrop(t *testing.T) {
	bin := buildOrderd(t)
	dir := t.TempDir()
	html, js := filepath.Join(dir, "c.html"), filepath.Join(dir, "c.json")
	out, err := runArgs(t, "compare", "--orderd", bin, "--strategies", "batch,row", "--scenario", "drop", "--users", "500",
		"--stock", "50", "--lead", "1s", "--after", "500ms", "--concurrency", "16", "--quiet", "--html", html, "--json", js)
	if err != nil {
		t.Fatalf("compare: %v", err)
	}
	if !strings.Contains(out, "before start") {
		t.Errorf("want a drop table")
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "no-op ceiling ") || (strings.HasPrefix(l, "batch ") || strings.HasPrefix(l, "row ")) && !strings.HasSuffix(l, " ok") {
			t.Errorf("table row %q", l)
		}
	}
	var rows struct {
		Rows []compareRow `json:"rows"`
	}
	b, _ := os.ReadFile(js)
	if err := json.Unmarshal(b, &rows); err != nil || len(rows.Rows) != 2 {
		t.Fatalf("JSON results (%v): %s", err, b)
	}
	for _, r := range rows.Rows {
		if r.Result == nil {
			t.Fatalf("%s failed: %s", r.Name, r.Failed)
		}
		checkDrop(t, r.Result, 500, 50)
	}
	if page, err := os.ReadFile(html); err != nil || !bytes.Contains(page, []byte("How long the stock lasted")) {
		t.Errorf("compare HTML report (%v): no bars of how long the stock lasted", err)
	}
}
