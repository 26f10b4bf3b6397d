package orderd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

const adminToken = "test-admin-token"

// transport is shared by every test client, with room for the concurrency tests.
var transport = &http.Transport{MaxIdleConns: 2000, MaxIdleConnsPerHost: 2000, IdleConnTimeout: 30 * time.Second}

// startOrderd runs orderd on a free port against dbURL, as the binary would
// with these flags, and stops it when the test ends.
func startOrderd(t *testing.T, dbURL string, args ...string) (*Main, *orderhttp.Client) {
	t.Helper()
	return startOrderdWithLocker(t, dbURL, nil, args...)
}

// strategies are the deduction strategies that every end-to-end test runs.
var strategies = []string{"row", "batch", "segment"}

// TestOrderd runs the whole API end to end on every database and strategy.
func TestOrderd(t *testing.T) {
	for _, strategy := range strategies {
		for _, db := range testenv.Databases(t) {
			t.Run(db.Engine+"/"+strategy, func(t *testing.T) {
				t.Parallel()
				// Twelve orderds at once, each sent 1,000 orders for one
				// hot row (HotSKUConcurrency), with the default product
				// cache TTL: an entry that expires meanwhile is read again
				// in the background while the strategies decide, so no
				// order waits behind the row strategy's transactions for it.
				testAPI(t, db.URL, "--strategy", strategy)
			})
		}
	}
}

// testAPI runs the API suite against an orderd on dbURL started with args.
func testAPI(t *testing.T, dbURL string, args ...string) {
	m, c := startOrderd(t, dbURL, args...)
	t.Run("Products", func(t *testing.T) { testProducts(t, c) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, m, c) })
	t.Run("HotSKUConcurrency", func(t *testing.T) { testHotSKU(t, c) })
	t.Run("PerUserLimitConcurrency", func(t *testing.T) { testPerUserLimit(t, c) })
	t.Run("MultiItemAllOrNothing", func(t *testing.T) { testMultiItem(t, c) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, c) })
	t.Run("Pagination", func(t *testing.T) { testPagination(t, c) })
	t.Run("ReplayAfterRestart", func(t *testing.T) { testReplayAfterRestart(t, dbURL, args...) })
	assertAudit(t, c)
}

func putProduct(t *testing.T, c *orderhttp.Client, sku string, stock, limit int64) *flashorder.Product {
	t.Helper()
	p, err := c.PutProduct(context.Background(), flashorder.Product{SKU: sku, Name: "Product " + sku, PriceCents: 1999, Stock: stock, PerUserLimit: limit})
	if err != nil {
		t.Fatalf("put product %s: %v", sku, err)
	}
	return p
}

func getProduct(t *testing.T, c *orderhttp.Client, sku string) *flashorder.Product {
	t.Helper()
	p, err := c.Product(context.Background(), sku)
	if err != nil {
		t.Fatalf("get product %s: %v", sku, err)
	}
	return p
}

func order(user string, items ...flashorder.ItemRequest) flashorder.OrderRequest {
	return flashorder.OrderRequest{UserID: user, Items: items}
}

func item(sku string, q int64) flashorder.ItemRequest {
	return flashorder.ItemRequest{SKU: sku, Quantity: q}
}

// errCode returns the API error code of err, "" for nil.
func errCode(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var ce *orderhttp.ClientError
	if !errors.As(err, &ce) {
		t.Fatalf("not an API answer: %v", err)
	}
	return ce.Code
}

func assertAudit(t *testing.T, c *orderhttp.Client) *flashorder.Audit {
	t.Helper()
	a, err := c.Audit(context.Background())
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	if !a.OK {
		t.Fatalf("audit failed: %+v", a.Products)
	}
	return a
}

func auditLine(t *testing.T, c *orderhttp.Client, sku string) flashorder.AuditLine {
	t.Helper()
	for _, l := range assertAudit(t, c).Products {
		if l.SKU == sku {
			return l
		}
	}
	t.Fatalf("audit has no line for %s", sku)
	return flashorder.AuditLine{}
}

func testProducts(t *testing.T, c *orderhttp.Client) {
	ctx := context.Background()
	p := putProduct(t, c, "prod-1", 10, 2)
	want := flashorder.Product{SKU: "prod-1", Name: "Product prod-1", PriceCents: 1999, Stock: 10, PerUserLimit: 2}
	if *p != want {
		t.Fatalf("put answered %+v, want %+v", *p, want)
	}
	if _, err := c.CreateOrder(ctx, order("pu-1", item("prod-1", 2)), ""); err != nil {
		t.Fatalf("order: %v", err)
	}
	got := getProduct(t, c, "prod-1")
	if got.Stock != 8 || got.Sold != 2 {
		t.Fatalf("after an order of 2: stock %d sold %d, want 8 and 2", got.Stock, got.Sold)
	}
	// Setting stock records the change as a restock: 8 -> 20 adds 12.
	putProduct(t, c, "prod-1", 20, 2)
	if l := auditLine(t, c, "prod-1"); l.Restocked != 22 || l.Available != 20 || l.Sold != 2 {
		t.Fatalf("audit after restock: %+v, want restocked 22 available 20 sold 2", l)
	}
	if _, err := c.Product(ctx, "no-such-sku"); errCode(t, err) != flashorder.ENOTFOUND {
		t.Fatalf("unknown product: %v, want not_found", err)
	}
}

// rawRequest sends one request and returns the status and error code.
func rawRequest(t *testing.T, method, url string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var eb struct {
		Error struct{ Code, Message string }
	}
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(data, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Fatalf("%s %s: error body %q is not in the documented format", method, url, data)
		}
	}
	return resp.StatusCode, eb.Error.Code
}

func testBadInput(t *testing.T, m *Main, c *orderhttp.Client) {
	putProduct(t, c, "bad-1", 5, 0)
	before := auditLine(t, c, "bad-1")
	base := m.URL()
	jsonCT := map[string]string{"Content-Type": "application/json"}
	admin := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + adminToken}
	orderBody := func(user, items string) string { return `{"user_id":"` + user + `","items":` + items + `}` }
	okItems := `[{"sku":"bad-1","quantity":1}]`
	many := make([]string, 21)
	for i := range many {
		many[i] = fmt.Sprintf(`{"sku":"s%d","quantity":1}`, i)
	}
	cases := []struct {
		name         string
		method, path string
		header       map[string]string
		body         string
		status       int
		code         string
	}{
		{"malformed JSON", "POST", "/api/v1/orders", jsonCT, `{"user_id":"u1","items":[`, 400, "invalid_request"},
		{"not an object", "POST", "/api/v1/orders", jsonCT, `[1,2]`, 400, "invalid_request"},
		{"empty body", "POST", "/api/v1/orders", jsonCT, ``, 400, "invalid_request"},
		{"trailing garbage", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", okItems) + ` x`, 400, "invalid_request"},
		{"second value", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", okItems) + `{}`, 400, "invalid_request"},
		{"unknown field", "POST", "/api/v1/orders", jsonCT, `{"user_id":"bu-1","items":` + okItems + `,"price_cents":1}`, 400, "invalid_request"},
		{"unknown item field", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":1,"price_cents":0}]`), 400, "invalid_request"},
		{"user_id wrong type", "POST", "/api/v1/orders", jsonCT, `{"user_id":5,"items":` + okItems + `}`, 400, "invalid_request"},
		{"items wrong type", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `{"sku":"bad-1"}`), 400, "invalid_request"},
		{"missing user_id", "POST", "/api/v1/orders", jsonCT, `{"items":` + okItems + `}`, 400, "invalid_request"},
		{"empty items", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[]`), 400, "invalid_request"},
		{"missing items", "POST", "/api/v1/orders", jsonCT, `{"user_id":"bu-1"}`, 400, "invalid_request"},
		{"21 items", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", "["+strings.Join(many, ",")+"]"), 400, "invalid_request"},
		{"duplicate skus", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":1},{"sku":"bad-1","quantity":1}]`), 400, "invalid_request"},
		{"quantity 0", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":0}]`), 400, "invalid_request"},
		{"quantity -1", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":-1}]`), 400, "invalid_request"},
		{"quantity 1001", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":1001}]`), 400, "invalid_request"},
		{"quantity 1.5", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":1.5}]`), 400, "invalid_request"},
		{"quantity 1.0", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":1.0}]`), 400, "invalid_request"},
		{"quantity string", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":"1"}]`), 400, "invalid_request"},
		{"quantity missing", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1"}]`), 400, "invalid_request"},
		{"quantity overflows int64", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":99999999999999999999}]`), 400, "invalid_request"},
		{"sku too long", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"`+strings.Repeat("a", 65)+`","quantity":1}]`), 400, "invalid_request"},
		{"sku empty", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"","quantity":1}]`), 400, "invalid_request"},
		{"sku with space", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad 1","quantity":1}]`), 400, "invalid_request"},
		{"sku with quote", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad'1","quantity":1}]`), 400, "invalid_request"},
		{"sku with semicolon", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1;drop","quantity":1}]`), 400, "invalid_request"},
		{"sku with path", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"../bad-1","quantity":1}]`), 400, "invalid_request"},
		{"sku unicode", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bäd-1","quantity":1}]`), 400, "invalid_request"},
		{"user_id too long", "POST", "/api/v1/orders", jsonCT, orderBody(strings.Repeat("u", 65), okItems), 400, "invalid_request"},
		{"user_id empty", "POST", "/api/v1/orders", jsonCT, orderBody("", okItems), 400, "invalid_request"},
		{"user_id with space", "POST", "/api/v1/orders", jsonCT, orderBody("bu 1", okItems), 400, "invalid_request"},
		{"user_id with quote", "POST", "/api/v1/orders", jsonCT, orderBody(`bu\"1`, okItems), 400, "invalid_request"},
		{"user_id with semicolon", "POST", "/api/v1/orders", jsonCT, orderBody("bu;1", okItems), 400, "invalid_request"},
		{"user_id with path", "POST", "/api/v1/orders", jsonCT, orderBody("../bu-1", okItems), 400, "invalid_request"},
		{"user_id unicode", "POST", "/api/v1/orders", jsonCT, orderBody("bü-1", okItems), 400, "invalid_request"},
		{"body over 64 KiB", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", okItems) + strings.Repeat(" ", 65537), 413, "body_too_large"},
		{"text/plain", "POST", "/api/v1/orders", map[string]string{"Content-Type": "text/plain"}, orderBody("bu-1", okItems), 415, "unsupported_media_type"},
		{"no content type", "POST", "/api/v1/orders", nil, orderBody("bu-1", okItems), 415, "unsupported_media_type"},
		{"json with charset is fine but sku unknown", "POST", "/api/v1/orders", map[string]string{"Content-Type": "application/json; charset=utf-8"}, orderBody("bu-1", `[{"sku":"no-such","quantity":1}]`), 422, "unknown_product"},
		{"unknown sku beside a known one", "POST", "/api/v1/orders", jsonCT, orderBody("bu-1", `[{"sku":"bad-1","quantity":1},{"sku":"no-such","quantity":1}]`), 422, "unknown_product"},
		{"empty idempotency key", "POST", "/api/v1/orders", map[string]string{"Content-Type": "application/json", "Idempotency-Key": ""}, orderBody("bu-1", okItems), 400, "invalid_request"},
		{"idempotency key too long", "POST", "/api/v1/orders", map[string]string{"Content-Type": "application/json", "Idempotency-Key": strings.Repeat("k", 256)}, orderBody("bu-1", okItems), 400, "invalid_request"},
		{"idempotency key not ascii", "POST", "/api/v1/orders", map[string]string{"Content-Type": "application/json", "Idempotency-Key": "kä"}, orderBody("bu-1", okItems), 400, "invalid_request"},

		{"put without token", "PUT", "/api/v1/products/bad-1", jsonCT, `{"name":"x","price_cents":1,"stock":100}`, 401, "unauthorized"},
		{"put with wrong token", "PUT", "/api/v1/products/bad-1", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer nope"}, `{"name":"x","price_cents":1,"stock":100}`, 401, "unauthorized"},
		{"put basic auth", "PUT", "/api/v1/products/bad-1", map[string]string{"Content-Type": "application/json", "Authorization": "Basic " + adminToken}, `{"name":"x","price_cents":1,"stock":100}`, 401, "unauthorized"},
		{"audit without token", "GET", "/api/v1/admin/audit", nil, ``, 401, "unauthorized"},
		{"put negative stock", "PUT", "/api/v1/products/bad-1", admin, `{"name":"x","price_cents":1,"stock":-1}`, 400, "invalid_request"},
		{"put negative price", "PUT", "/api/v1/products/bad-1", admin, `{"name":"x","price_cents":-1,"stock":100}`, 400, "invalid_request"},
		{"put price overflows int64", "PUT", "/api/v1/products/bad-1", admin, `{"name":"x","price_cents":9223372036854775808,"stock":100}`, 400, "invalid_request"},
		{"put stock overflows int64", "PUT", "/api/v1/products/bad-1", admin, `{"name":"x","price_cents":1,"stock":1e30}`, 400, "invalid_request"},
		{"put huge stock", "PUT", "/api/v1/products/bad-1", admin, `{"name":"x","price_cents":1,"stock":9223372036854775807}`, 400, "invalid_request"},
		{"put negative limit", "PUT", "/api/v1/products/bad-1", admin, `{"name":"x","price_cents":1,"stock":100,"per_user_limit":-1}`, 400, "invalid_request"},
		{"put missing name", "PUT", "/api/v1/products/bad-1", admin, `{"price_cents":1,"stock":100}`, 400, "invalid_request"},
		{"put empty name", "PUT", "/api/v1/products/bad-1", admin, `{"name":"","price_cents":1,"stock":100}`, 400, "invalid_request"},
		{"put name too long", "PUT", "/api/v1/products/bad-1", admin, `{"name":"` + strings.Repeat("n", 201) + `","price_cents":1,"stock":100}`, 400, "invalid_request"},
		{"put missing stock", "PUT", "/api/v1/products/bad-1", admin, `{"name":"x","price_cents":1}`, 400, "invalid_request"},
		{"put unknown field", "PUT", "/api/v1/products/bad-1", admin, `{"name":"x","price_cents":1,"stock":100,"sold":3}`, 400, "invalid_request"},
		{"put bad sku in path", "PUT", "/api/v1/products/bad%20sku", admin, `{"name":"x","price_cents":1,"stock":100}`, 400, "invalid_request"},
		{"put not json", "PUT", "/api/v1/products/bad-1", map[string]string{"Authorization": "Bearer " + adminToken, "Content-Type": "text/plain"}, `{"name":"x","price_cents":1,"stock":100}`, 415, "unsupported_media_type"},
		{"get bad sku", "GET", "/api/v1/products/bad;sku", nil, ``, 400, "invalid_request"},
		{"list without user", "GET", "/api/v1/orders", nil, ``, 400, "invalid_request"},
		{"list limit 0", "GET", "/api/v1/orders?user_id=bu-1&limit=0", nil, ``, 400, "invalid_request"},
		{"list limit 201", "GET", "/api/v1/orders?user_id=bu-1&limit=201", nil, ``, 400, "invalid_request"},
		{"list limit text", "GET", "/api/v1/orders?user_id=bu-1&limit=ten", nil, ``, 400, "invalid_request"},
		{"list bad cursor", "GET", "/api/v1/orders?user_id=bu-1&cursor=!!!not-base64", nil, ``, 400, "invalid_request"},
		{"get unknown order", "GET", "/api/v1/orders/01900000-0000-7000-8000-000000000000", nil, ``, 404, "not_found"},
		{"unknown route", "GET", "/api/v2/orders", nil, ``, 404, "not_found"},
		{"wrong method", "DELETE", "/api/v1/orders", nil, ``, 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		status, code := rawRequest(t, tc.method, base+tc.path, tc.header, tc.body)
		if status != tc.status || code != tc.code {
			t.Errorf("%s: got %d %s, want %d %s", tc.name, status, code, tc.status, tc.code)
		}
	}
	if after := auditLine(t, c, "bad-1"); after != before {
		t.Fatalf("bad input changed the product: before %+v after %+v", before, after)
	}
	if p := getProduct(t, c, "bad-1"); p.Name != "Product bad-1" || p.PriceCents != 1999 || p.Stock != 5 {
		t.Fatalf("bad input changed the product: %+v", p)
	}
	for _, u := range []string{"bu-1"} {
		orders, _, err := c.Orders(context.Background(), u, 0, "")
		if err != nil || len(orders) != 0 {
			t.Fatalf("bad input created orders for %s: %v %v", u, orders, err)
		}
	}
}

// placeConcurrently sends the requests at once and counts the answers by code
// ("created" for 201s); it returns the created orders too.
func placeConcurrently(t *testing.T, c *orderhttp.Client, reqs []flashorder.OrderRequest, keys []string) (map[string]int, []*flashorder.Order) {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var created []*flashorder.Order
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range reqs {
		key := ""
		if keys != nil {
			key = keys[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := c.CreateOrder(context.Background(), r, key)
			mu.Lock()
			defer mu.Unlock()
			var ce *orderhttp.ClientError
			switch {
			case err == nil && res.Replayed:
				counts["replayed"]++
			case err == nil:
				counts["created"]++
				created = append(created, res.Order)
			case errors.As(err, &ce):
				counts[ce.Code]++
			default:
				counts["transport: "+err.Error()]++
			}
		}()
	}
	close(start)
	wg.Wait()
	return counts, created
}

func testHotSKU(t *testing.T, c *orderhttp.Client) {
	putProduct(t, c, "hot-1", 100, 0)
	reqs := make([]flashorder.OrderRequest, 1000)
	for i := range reqs {
		reqs[i] = order(fmt.Sprintf("hot-user-%d", i), item("hot-1", 1))
	}
	counts, created := placeConcurrently(t, c, reqs, nil)
	if counts["created"] != 100 || counts[flashorder.ESOLDOUT] != 900 || len(counts) != 2 {
		t.Fatalf("1000 orders for 100 units: %v, want 100 created and 900 sold_out", counts)
	}
	if p := getProduct(t, c, "hot-1"); p.Stock != 0 || p.Sold != 100 {
		t.Fatalf("after the sale: stock %d sold %d, want 0 and 100", p.Stock, p.Sold)
	}
	if l := auditLine(t, c, "hot-1"); l.Sold != 100 || l.Available != 0 || l.Restocked != 100 {
		t.Fatalf("audit: %+v", l)
	}
	// No lost order: every 201 is in the database with the same items.
	for _, o := range created {
		got, err := c.Order(context.Background(), o.ID)
		if err != nil {
			t.Fatalf("order %s answered 201 but reads back: %v", o.ID, err)
		}
		if got.UserID != o.UserID || len(got.Items) != 1 || got.Items[0] != o.Items[0] || !got.CreatedAt.Equal(o.CreatedAt) {
			t.Fatalf("order %s reads back as %+v, answered as %+v", o.ID, got, o)
		}
	}
}

func testPerUserLimit(t *testing.T, c *orderhttp.Client) {
	putProduct(t, c, "limited-1", 100, 1)
	reqs := make([]flashorder.OrderRequest, 50)
	for i := range reqs {
		reqs[i] = order("greedy-user", item("limited-1", 1))
	}
	counts, _ := placeConcurrently(t, c, reqs, nil)
	if counts["created"] != 1 || counts[flashorder.ELIMITEXCEEDED] != 49 {
		t.Fatalf("50 orders of one user, limit 1: %v, want 1 created and 49 limit_exceeded", counts)
	}
	if p := getProduct(t, c, "limited-1"); p.Stock != 99 {
		t.Fatalf("stock %d, want 99", p.Stock)
	}
	// Quantity over the limit in one order is refused too; another user is not affected.
	putProduct(t, c, "limited-2", 100, 3)
	ctx := context.Background()
	if _, err := c.CreateOrder(ctx, order("greedy-user", item("limited-2", 4)), ""); errCode(t, err) != flashorder.ELIMITEXCEEDED {
		t.Fatalf("4 units with limit 3: %v, want limit_exceeded", err)
	}
	for _, q := range []int64{2, 1} {
		if _, err := c.CreateOrder(ctx, order("greedy-user", item("limited-2", q)), ""); err != nil {
			t.Fatalf("%d units within the limit: %v", q, err)
		}
	}
	if _, err := c.CreateOrder(ctx, order("greedy-user", item("limited-2", 1)), ""); errCode(t, err) != flashorder.ELIMITEXCEEDED {
		t.Fatalf("a 4th unit across orders: %v, want limit_exceeded", err)
	}
	if _, err := c.CreateOrder(ctx, order("other-user", item("limited-2", 3)), ""); err != nil {
		t.Fatalf("another user: %v", err)
	}
}

func testMultiItem(t *testing.T, c *orderhttp.Client) {
	ctx := context.Background()
	putProduct(t, c, "multi-b", 1, 0)
	putProduct(t, c, "multi-a", 5, 0)
	// B lacks stock: nothing of A is taken either.
	_, err := c.CreateOrder(ctx, order("mu-1", item("multi-b", 2), item("multi-a", 2)), "")
	if errCode(t, err) != flashorder.ESOLDOUT {
		t.Fatalf("multi-item order beyond stock: %v, want sold_out", err)
	}
	if a, b := getProduct(t, c, "multi-a"), getProduct(t, c, "multi-b"); a.Stock != 5 || b.Stock != 1 {
		t.Fatalf("a refused order took stock: a=%d b=%d", a.Stock, b.Stock)
	}
	res, err := c.CreateOrder(ctx, order("mu-1", item("multi-b", 1), item("multi-a", 2)), "")
	if err != nil {
		t.Fatalf("multi-item order: %v", err)
	}
	o := res.Order
	if len(o.Items) != 2 || o.Items[0].SKU != "multi-b" || o.Items[1].SKU != "multi-a" || o.TotalCents != 3*1999 || o.Status != flashorder.StatusCreated {
		t.Fatalf("order %+v: want items in request order, total %d", o, 3*1999)
	}
	if res.Location != "/api/v1/orders/"+o.ID {
		t.Fatalf("Location %q", res.Location)
	}
	if a, b := getProduct(t, c, "multi-a"), getProduct(t, c, "multi-b"); a.Stock != 3 || b.Stock != 0 {
		t.Fatalf("after the order: a=%d b=%d, want 3 and 0", a.Stock, b.Stock)
	}
	got, err := c.Order(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	gj, _ := json.Marshal(got)
	oj, _ := json.Marshal(o)
	if !bytes.Equal(gj, oj) {
		t.Fatalf("GET answers %s, POST answered %s", gj, oj)
	}
}

func testIdempotency(t *testing.T, c *orderhttp.Client) {
	ctx := context.Background()
	base := c.BaseURL
	putProduct(t, c, "idem-1", 10, 0)
	// The same request, spaced differently, replays the first answer byte for byte.
	first := postRaw(t, base, "key-1", `{"user_id":"iu-1","items":[{"sku":"idem-1","quantity":2}]}`)
	again := postRaw(t, base, "key-1", "{ \"items\" : [ {\"quantity\":2, \"sku\":\"idem-1\"} ],\n \"user_id\":\"iu-1\" }")
	if first.status != 201 || again.status != 201 || first.body != again.body || first.location != again.location || again.replayed != "true" || first.replayed != "" {
		t.Fatalf("replay: first %+v, again %+v", first, again)
	}
	if p := getProduct(t, c, "idem-1"); p.Stock != 8 {
		t.Fatalf("a replay took stock: %d left, want 8", p.Stock)
	}
	// Another request under the used key.
	if other := postRaw(t, base, "key-1", `{"user_id":"iu-1","items":[{"sku":"idem-1","quantity":1}]}`); other.status != 422 || !strings.Contains(other.body, "idempotency_key_reused") {
		t.Fatalf("other body under a used key: %+v", other)
	}
	// A business refusal is stored and replayed, even once stock is back.
	putProduct(t, c, "idem-2", 0, 0)
	refused := postRaw(t, base, "key-2", `{"user_id":"iu-1","items":[{"sku":"idem-2","quantity":1}]}`)
	putProduct(t, c, "idem-2", 5, 0)
	replayed := postRaw(t, base, "key-2", `{"user_id":"iu-1","items":[{"sku":"idem-2","quantity":1}]}`)
	if refused.status != 409 || replayed.status != 409 || refused.body != replayed.body || replayed.replayed != "true" {
		t.Fatalf("stored refusal: first %+v, replay %+v", refused, replayed)
	}
	// A 400 is not stored: the key stays free.
	if bad := postRaw(t, base, "key-3", `{"user_id":"iu-1","items":[]}`); bad.status != 400 {
		t.Fatalf("bad request: %+v", bad)
	}
	if good := postRaw(t, base, "key-3", `{"user_id":"iu-1","items":[{"sku":"idem-2","quantity":1}]}`); good.status != 201 {
		t.Fatalf("a key whose first use was a 400 is free: %+v", good)
	}
	// 100 concurrent duplicates: one order.
	reqs := make([]flashorder.OrderRequest, 100)
	keys := make([]string, 100)
	for i := range reqs {
		reqs[i] = order("iu-2", item("idem-1", 1))
		keys[i] = "key-concurrent"
	}
	counts, _ := placeConcurrently(t, c, reqs, keys)
	if counts["created"] != 1 || counts["created"]+counts["replayed"]+counts[flashorder.EINPROGRESS] != 100 {
		t.Fatalf("100 concurrent duplicates: %v, want 1 created and the rest replayed or in progress", counts)
	}
	if orders, _, _ := c.Orders(ctx, "iu-2", 0, ""); len(orders) != 1 {
		t.Fatalf("100 concurrent duplicates made %d orders", len(orders))
	}
}

type rawAnswer struct {
	status                   int
	body, location, replayed string
}

func postRaw(t *testing.T, base, key, body string) rawAnswer {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/v1/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return rawAnswer{resp.StatusCode, string(data), resp.Header.Get("Location"), resp.Header.Get("Idempotent-Replayed")}
}

func testPagination(t *testing.T, c *orderhttp.Client) {
	ctx := context.Background()
	putProduct(t, c, "page-1", 100, 0)
	var ids []string
	for range 5 {
		res, err := c.CreateOrder(ctx, order("pager", item("page-1", 1)), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Order.ID)
	}
	var seen []string
	cursor, pages := "", 0
	for {
		orders, next, err := c.Orders(ctx, "pager", 2, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range orders {
			seen = append(seen, o.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if pages != 3 || len(seen) != 5 {
		t.Fatalf("5 orders by 2: %d pages, %d orders", pages, len(seen))
	}
	for i := range seen {
		if seen[i] != ids[len(ids)-1-i] {
			t.Fatalf("orders not newest first: %v, created %v", seen, ids)
		}
	}
}

// testReplayAfterRestart checks that the database guards a key that the
// in-process store forgot: a fresh orderd replays the order, never a second.
func testReplayAfterRestart(t *testing.T, dbURL string, args ...string) {
	first, c1 := startOrderd(t, dbURL, args...)
	putProduct(t, c1, "restart-1", 1, 0)
	orig := postRaw(t, c1.BaseURL, "restart-key", `{"user_id":"ru-1","items":[{"sku":"restart-1","quantity":1}]}`)
	if orig.status != 201 {
		t.Fatalf("first order: %+v", orig)
	}
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, c2 := startOrderd(t, dbURL, args...)
	// Stock is 0 now: a replay must return the order, not sold_out.
	replay := postRaw(t, c2.BaseURL, "restart-key", `{"user_id":"ru-1","items":[{"sku":"restart-1","quantity":1}]}`)
	if replay.status != 201 || replay.body != orig.body || replay.location != orig.location || replay.replayed != "true" {
		t.Fatalf("replay after restart: %+v, first answer %+v", replay, orig)
	}
	// With stock back, still no second order.
	putProduct(t, c2, "restart-1", 5, 0)
	_, c3 := startOrderd(t, dbURL, args...)
	replay = postRaw(t, c3.BaseURL, "restart-key", `{"user_id":"ru-1","items":[{"sku":"restart-1","quantity":1}]}`)
	if replay.status != 201 || replay.body != orig.body {
		t.Fatalf("replay after restart with stock: %+v", replay)
	}
	if other := postRaw(t, c3.BaseURL, "restart-key", `{"user_id":"ru-2","items":[{"sku":"restart-1","quantity":1}]}`); other.status != 422 {
		t.Fatalf("other body under a stored key after restart: %+v", other)
	}
	if p := getProduct(t, c3, "restart-1"); p.Stock != 5 || p.Sold != 1 {
		t.Fatalf("after replays: stock %d sold %d, want 5 and 1", p.Stock, p.Sold)
	}
}
