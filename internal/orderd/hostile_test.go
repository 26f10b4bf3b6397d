package orderd

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// hostile is one request of the hostile catalogue (issue 13) and the
// answer it must get.
type hostile struct {
	name   string
	method string
	path   string
	header map[string]string
	body   string
	status int
	code   string // "" for a success
}

func gzipped(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.String()
}

// TestHostileRequests sends the hostile catalogue to orderd on every
// database: each request gets its 4xx (never a 5xx or a 503 with
// Retry-After), nothing changes, and orderd logs no error.
func TestHostileRequests(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Engine, func(t *testing.T) {
			t.Parallel()
			testHostile(t, db.URL)
		})
	}
}

func testHostile(t *testing.T, dbURL string) {
	ctx := context.Background()
	m, c := startOrderd(t, dbURL, "--max-inflight", "2")
	sku := "hostile-1"
	putProduct(t, c, sku, 100, 0)
	placed, err := c.CreateOrder(ctx, order("h-user", flashorder.ItemRequest{SKU: sku, Quantity: 1}), "")
	if err != nil {
		t.Fatal(err)
	}
	id := placed.Order.ID
	jsonCT := map[string]string{"Content-Type": "application/json"}
	admin := map[string]string{"Content-Type": "application/json", "Authorization": "bearer " + adminToken}
	orderBody := `{"user_id":"h-user","items":[{"sku":"` + sku + `","quantity":1}]}`
	cases := []hostile{
		// 5: ids, cursors and names that cannot be valid.
		{"id %ff", "GET", "/api/v1/orders/%ff", nil, "", 404, flashorder.ENOTFOUND},
		{"id %00", "GET", "/api/v1/orders/%00", nil, "", 404, flashorder.ENOTFOUND},
		{"id with a space", "GET", "/api/v1/orders/a%20b", nil, "", 404, flashorder.ENOTFOUND},
		{"cancel %ff", "POST", "/api/v1/orders/%ff/cancel", nil, "", 404, flashorder.ENOTFOUND},
		{"pay %00", "POST", "/api/v1/orders/%00/pay", nil, "", 404, flashorder.ENOTFOUND},
		{"cursor AA (a NUL)", "GET", "/api/v1/orders?user_id=h-user&cursor=AA", nil, "", 400, flashorder.EINVALID},
		{"cursor of bytes", "GET", "/api/v1/orders?user_id=h-user&cursor=__8", nil, "", 400, flashorder.EINVALID},
		{"user_id with NUL", "GET", "/api/v1/orders?user_id=u%00", nil, "", 400, flashorder.EINVALID},
		{"sku %ff", "GET", "/api/v1/products/%ff", nil, "", 400, flashorder.EINVALID},
		{"name with NUL", "PUT", "/api/v1/products/" + sku, admin, `{"name":"a\u0000b","price_cents":1,"stock":1}`, 400, flashorder.EINVALID},
		{"webhook off", "POST", "/api/v1/payments/webhook", jsonCT, `{"order_id":"\u0000","event":"paid"}`, 404, flashorder.ENOTFOUND},
		// 7: scheme case, strict JSON, HEAD, Content-Encoding.
		{"admin scheme in lower case", "GET", "/api/v1/admin/audit", map[string]string{"Authorization": "bearer " + adminToken}, "", 200, ""},
		{"admin scheme in upper case", "GET", "/api/v1/admin/audit", map[string]string{"Authorization": "BEARER " + adminToken}, "", 200, ""},
		{"admin scheme Basic", "GET", "/api/v1/admin/audit", map[string]string{"Authorization": "Basic " + adminToken}, "", 401, flashorder.EUNAUTHORIZED},
		{"duplicate user_id", "POST", "/api/v1/orders", jsonCT, `{"user_id":"a","user_id":"b","items":[{"sku":"` + sku + `","quantity":1}]}`, 400, flashorder.EINVALID},
		{"duplicate quantity", "POST", "/api/v1/orders", jsonCT, `{"user_id":"a","items":[{"sku":"` + sku + `","quantity":1,"quantity":1000}]}`, 400, flashorder.EINVALID},
		{"USER_ID", "POST", "/api/v1/orders", jsonCT, `{"USER_ID":"a","items":[{"sku":"` + sku + `","quantity":1}]}`, 400, flashorder.EINVALID},
		{"Items", "POST", "/api/v1/orders", jsonCT, `{"user_id":"a","Items":[{"sku":"` + sku + `","quantity":1}]}`, 400, flashorder.EINVALID},
		{"duplicate name", "PUT", "/api/v1/products/" + sku, admin, `{"name":"a","name":"b","price_cents":1,"stock":1}`, 400, flashorder.EINVALID},
		{"Stock", "PUT", "/api/v1/products/" + sku, admin, `{"name":"a","price_cents":1,"Stock":1}`, 400, flashorder.EINVALID},
		{"gzip body", "POST", "/api/v1/orders", map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzipped(orderBody), 415, flashorder.EUNSUPPORTEDMEDIA},
		{"gzip product", "PUT", "/api/v1/products/" + sku, map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip", "Authorization": "Bearer " + adminToken}, gzipped(`{"name":"a","price_cents":1,"stock":1}`), 415, flashorder.EUNSUPPORTEDMEDIA},
		{"HEAD healthz", "HEAD", "/healthz", nil, "", 200, ""},
		{"HEAD product", "HEAD", "/api/v1/products/" + sku, nil, "", 200, ""},
		{"HEAD order", "HEAD", "/api/v1/orders/" + id, nil, "", 200, ""},
		{"HEAD list", "HEAD", "/api/v1/orders?user_id=h-user", nil, "", 200, ""},
		{"HEAD metrics", "HEAD", "/metrics", nil, "", 200, ""},
		// 2: a made-up method is 405 and does not reach the labels.
		{"made-up method", "BREW", "/healthz", nil, "", 405, flashorder.EMETHODNOTALLOWED},
	}
	before := snapshot(t, withToken(c, adminToken), []string{sku}, []string{"h-user", "a", "b"})
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, c.BaseURL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		resp, err := c.HTTPClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code := ""
		if resp.StatusCode >= 300 {
			code = errorCodeOf(body)
		}
		if resp.StatusCode != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, body, tc.status, tc.code)
		}
		if tc.method == "HEAD" && len(body) != 0 {
			t.Errorf("%s: HEAD answered a body of %d bytes", tc.name, len(body))
		}
	}
	if after := snapshot(t, withToken(c, adminToken), []string{sku}, []string{"h-user", "a", "b"}); !after.equal(before) {
		t.Errorf("the hostile requests changed the state:\n before %+v\n after  %+v", before, after)
	}

	// 2: made-up 30 KB methods, each once, do not grow /metrics.
	const methods = 200
	for i := range methods {
		method := fmt.Sprintf("M%05d%s", i, strings.Repeat("X", 30_000))
		req, _ := http.NewRequest(method, c.BaseURL+"/api/v1/orders", nil)
		resp, err := c.HTTPClient.Do(req)
		if err != nil {
			t.Fatalf("method %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 405 || len(body) > 200 {
			t.Fatalf("method %d: %d, body of %d bytes", i, resp.StatusCode, len(body))
		}
	}
	resp, err := c.HTTPClient.Get(c.BaseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(scrape) > 512<<10 || bytes.Contains(scrape, []byte("XXXXXXXX")) {
		t.Errorf("/metrics is %d bytes after %d made-up methods (holds them: %v)", len(scrape), methods, bytes.Contains(scrape, []byte("XXXXXXXX")))
	}
	if !bytes.Contains(scrape, []byte(`method="other"`)) {
		t.Errorf("/metrics does not count the made-up methods as other")
	}

	// 4: clients that send headers and "{" and stall hold no in-flight
	// slot (--max-inflight 2): orders still go through.
	for range 4 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(c.BaseURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	}
	time.Sleep(100 * time.Millisecond) // let orderd start reading them
	for i := range 3 {
		if _, err := c.CreateOrder(ctx, order("h-user", flashorder.ItemRequest{SKU: sku, Quantity: 1}), ""); err != nil {
			t.Errorf("order %d beside the stalled bodies: %v", i, err)
		}
	}

	if logs := m.stderr.(*problemLog).String(); strings.Contains(logs, "level=ERROR") {
		t.Errorf("orderd logged errors for hostile requests:\n%s", logs)
	}
	assertAudit(t, c)
}

// errorCodeOf returns the code of an API error body.
func errorCodeOf(body []byte) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// TestRedactArgs checks what pprof's cmdline shows of orderd's flags.
func TestRedactArgs(t *testing.T) {
	args := []string{"--admin-token", "adm1n", "-jwt-secret=j4t", "--payment-webhook-secret=w3b",
		"--lock", "redis://:l0ck@127.0.0.1:6379/0", "--idempotency=redis://user:1dem@127.0.0.1:6379/1",
		"--db", "postgres://u:db-pa55@127.0.0.1:5432/x", "--listen", ":8080"}
	got := strings.Join(redactArgs(args), " ")
	for _, secret := range []string{"adm1n", "j4t", "w3b", "l0ck", "1dem", "db-pa55"} {
		if strings.Contains(got, secret) {
			t.Errorf("redacted args show %q: %s", secret, got)
		}
	}
	for _, kept := range []string{"--admin-token REDACTED", "-jwt-secret=REDACTED", "127.0.0.1:6379/0", "--listen :8080", "u:xxxxx@127.0.0.1:5432"} {
		if !strings.Contains(got, kept) {
			t.Errorf("redacted args lack %q: %s", kept, got)
		}
	}
}
