package http_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/jwtauth"
	"github.com/flashorder/flashorder/queue"
)

const (
	adminToken    = "openapi-admin"
	webhookSecret = "openapi-webhook"
)

// newTestServer runs the API on a fresh SQLite database with the batch
// strategy, the lifecycle and the webhook on, and auth (nil: none).
func newTestServer(t *testing.T, auth flashorder.Authenticator) (*orderhttp.Server, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	db, err := gormdb.Open(ctx, testenv.SQLiteURL(t), gormdb.Options{})
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	signer, err := queue.NewSigner([]byte("openapi-admission-secret-32-bytes!"))
	if err != nil {
		t.Fatal(err)
	}
	room := queue.NewRoom(inmem.NewQueueStore(queue.Options{}), signer, db, db, queue.RoomOptions{})
	srv := newServer(orderhttp.Config{Store: db, AdminToken: adminToken, Lifecycle: checkout.NewLifecycle(db),
		PaymentWebhookSecret: webhookSecret, Authenticator: auth, Room: room}, checkout.NewBatch(db, checkout.BatchOptions{}), nil)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return srv, ts
}

// loadDocument fetches /openapi.json from the server and loads and validates
// it as an OpenAPI 3 document.
func loadDocument(t *testing.T, baseURL string) *openapi3.T {
	t.Helper()
	resp, err := http.Get(baseURL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

var ginParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// TestOpenAPIRoutes checks that the document describes exactly the routes the
// server registers, with the same methods.
func TestOpenAPIRoutes(t *testing.T) {
	srv, ts := newTestServer(t, nil)
	doc := loadDocument(t, ts.URL)

	served := map[string]bool{}
	heads := map[string]bool{}
	for _, r := range srv.Routes() {
		path := ginParam.ReplaceAllString(r.Path, "{$1}")
		if r.Method == "HEAD" {
			// HEAD answers as GET does, without the body: implied by
			// the GET operation, as OpenAPI documents usually leave it.
			heads[path] = true
			continue
		}
		served[r.Method+" "+path] = true
	}
	for r := range served {
		if path, ok := strings.CutPrefix(r, "GET "); ok && !heads[path] {
			t.Errorf("the server serves GET %s but not HEAD", path)
		}
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for _, r := range sortedKeys(served) {
		if !documented[r] {
			t.Errorf("the server serves %s; openapi.json does not describe it", r)
		}
	}
	for _, r := range sortedKeys(documented) {
		if !served[r] {
			t.Errorf("openapi.json describes %s; the server does not serve it", r)
		}
	}
	if len(served) < 13 {
		t.Errorf("Routes returned %d routes, want the whole API: %v", len(served), sortedKeys(served))
	}
}

// apiCheck drives a server and validates every answer against the document.
type apiCheck struct {
	t       *testing.T
	baseURL string
	doc     *openapi3.T
	router  routers.Router
	// called counts the operations exercised, by "METHOD /path".
	called map[string]int
}

// call sends one request and checks its status, then validates the answer
// (and, when validRequest, the request) against the operation's document.
func (a *apiCheck) call(method, path string, header map[string]string, body string, wantStatus int, validRequest bool) []byte {
	a.t.Helper()
	req, err := http.NewRequest(method, a.baseURL+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		a.t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		a.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, got)
	}
	if resp.Header.Get(orderhttp.RequestIDHeader) == "" {
		a.t.Errorf("%s %s: no %s header", method, path, orderhttp.RequestIDHeader)
	}

	// Find the operation with a request whose URL carries the document's
	// server ("/"), then validate.
	vreq, err := http.NewRequest(method, path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	vreq.Header = req.Header.Clone()
	route, params, err := a.router.FindRoute(vreq)
	if err != nil {
		a.t.Fatalf("%s %s: no operation in openapi.json: %v", method, path, err)
	}
	a.called[method+" "+route.Path]++
	if resp.StatusCode < 500 && route.Operation.Responses.Status(resp.StatusCode) == nil {
		a.t.Errorf("%s %s: status %d is not documented", method, route.Path, resp.StatusCode)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	if validRequest {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			a.t.Errorf("%s %s: the test's request does not fit openapi.json: %v", method, path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(got)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		a.t.Errorf("%s %s -> %d does not fit openapi.json: %v\nbody: %s", method, path, resp.StatusCode, err, got)
	}
	return got
}

// newAPICheck loads openapi.json from the server at baseURL and returns a
// checker of that server's answers against it.
func newAPICheck(t *testing.T, baseURL string) *apiCheck {
	t.Helper()
	doc := loadDocument(t, baseURL)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &apiCheck{t: t, baseURL: baseURL, doc: doc, router: router, called: map[string]int{}}
}

// TestOpenAPIAnswers drives a real server through every operation, successes
// and errors, and validates each answer against openapi.json.
func TestOpenAPIAnswers(t *testing.T) {
	_, ts := newTestServer(t, nil)
	a := newAPICheck(t, ts.URL)
	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	const get, put, post = http.MethodGet, http.MethodPut, http.MethodPost

	a.call(get, "/healthz", nil, "", 200, true)
	a.call(get, "/readyz", nil, "", 200, true)
	a.call(get, "/openapi.json", nil, "", 200, true)

	a.call(put, "/api/v1/products/hot-1", admin, `{"name":"Phone","price_cents":199900,"stock":3,"per_user_limit":1}`, 200, true)
	a.call(put, "/api/v1/products/hot-2", admin, `{"name":"Case","price_cents":990,"stock":5}`, 200, true)
	a.call(put, "/api/v1/products/hot-1", nil, `{"name":"Phone","price_cents":1,"stock":3}`, 401, false)
	a.call(put, "/api/v1/products/hot-1", admin, `{"name":"","price_cents":1,"stock":3}`, 400, false)
	a.call(put, "/api/v1/products/hot-1", map[string]string{"Authorization": admin["Authorization"], "Content-Type": "text/plain"}, `x`, 415, false)
	a.call(put, "/api/v1/products/hot-1", admin, `{"name":"`+strings.Repeat("x", orderhttp.MaxBodyBytes)+`"}`, 413, false)
	a.call(get, "/api/v1/products/hot-1", nil, "", 200, true)
	a.call(get, "/api/v1/products/nope", nil, "", 404, true)
	a.call(get, "/api/v1/products/bad%20sku", nil, "", 400, false)

	key := map[string]string{orderhttp.IdempotencyKeyHeader: "openapi-key-1"}
	order := `{"user_id":"u-1","items":[{"sku":"hot-1","quantity":1}]}`
	var created flashorder.Order
	if err := json.Unmarshal(a.call(post, "/api/v1/orders", key, order, 201, true), &created); err != nil {
		t.Fatal(err)
	}
	a.call(post, "/api/v1/orders", key, order, 201, true) // replayed
	a.call(post, "/api/v1/orders", key, `{"user_id":"u-2","items":[{"sku":"hot-1","quantity":1}]}`, 422, true)
	a.call(post, "/api/v1/orders", nil, `{"user_id":"u-1","items":[{"sku":"hot-1","quantity":1}]}`, 409, true) // limit_exceeded
	a.call(post, "/api/v1/orders", nil, `{"user_id":"u-2","items":[{"sku":"hot-1","quantity":1}]}`, 201, true)
	a.call(post, "/api/v1/orders", nil, `{"user_id":"u-3","items":[{"sku":"hot-1","quantity":1}]}`, 201, true)
	a.call(post, "/api/v1/orders", nil, `{"user_id":"u-4","items":[{"sku":"hot-1","quantity":1}]}`, 409, true) // sold_out
	a.call(post, "/api/v1/orders", nil, `{"user_id":"u-4","items":[{"sku":"hot-2","quantity":2},{"sku":"nope","quantity":1}]}`, 422, true)
	a.call(post, "/api/v1/orders", nil, `{"user_id":"u-4","items":[{"sku":"hot-2","quantity":1.5}]}`, 400, false)
	a.call(post, "/api/v1/orders", map[string]string{"Content-Type": "text/plain"}, `{}`, 415, false)
	var second flashorder.Order
	if err := json.Unmarshal(a.call(post, "/api/v1/orders", nil, `{"user_id":"u-1","items":[{"sku":"hot-2","quantity":2}]}`, 201, true), &second); err != nil {
		t.Fatal(err)
	}
	var third flashorder.Order
	if err := json.Unmarshal(a.call(post, "/api/v1/orders", nil, `{"user_id":"u-1","items":[{"sku":"hot-2","quantity":1}]}`, 201, true), &third); err != nil {
		t.Fatal(err)
	}

	a.call(get, "/api/v1/orders/"+created.ID, nil, "", 200, true)
	a.call(get, "/api/v1/orders/no-such-order", nil, "", 404, true)
	list := a.call(get, "/api/v1/orders?user_id=u-1&limit=1", nil, "", 200, true)
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(list, &page); err != nil || page.NextCursor == "" {
		t.Fatalf("first page of u-1's orders has no next_cursor: %s", list)
	}
	a.call(get, "/api/v1/orders?user_id=u-1&limit=50&cursor="+page.NextCursor, nil, "", 200, true)
	a.call(get, "/api/v1/orders?user_id=nobody", nil, "", 200, true)
	a.call(get, "/api/v1/orders", nil, "", 400, false)

	a.call(post, "/api/v1/orders/"+created.ID+"/pay", nil, "", 200, true)
	a.call(post, "/api/v1/orders/"+created.ID+"/pay", nil, "", 409, true)
	a.call(post, "/api/v1/orders/no-such-order/pay", nil, "", 404, true)
	a.call(post, "/api/v1/orders/"+second.ID+"/cancel", nil, "", 200, true)
	a.call(post, "/api/v1/orders/"+second.ID+"/cancel", nil, "", 409, true)
	a.call(post, "/api/v1/orders/no-such-order/cancel", nil, "", 404, true)

	event := `{"order_id":"` + third.ID + `","event":"paid"}`
	sig := map[string]string{orderhttp.SignatureHeader: "sha256=" + hex.EncodeToString(orderhttp.SignBody([]byte(event), webhookSecret))}
	a.call(post, "/api/v1/payments/webhook", sig, event, 200, true)
	a.call(post, "/api/v1/payments/webhook", sig, event, 200, true) // at-least-once delivery
	a.call(post, "/api/v1/payments/webhook", map[string]string{orderhttp.SignatureHeader: "sha256=" + strings.Repeat("0", 64)}, event, 401, true)
	cancelledEvent := `{"order_id":"` + second.ID + `","event":"paid"}`
	a.call(post, "/api/v1/payments/webhook",
		map[string]string{orderhttp.SignatureHeader: "sha256=" + hex.EncodeToString(orderhttp.SignBody([]byte(cancelledEvent), webhookSecret))},
		cancelledEvent, 409, true)

	auditBody := a.call(get, "/api/v1/admin/audit", admin, "", 200, true)
	var audit flashorder.Audit
	if err := json.Unmarshal(auditBody, &audit); err != nil || !audit.OK || len(audit.Products) != 2 { // before the waiting room's product
		t.Errorf("audit after the calls: %s", auditBody)
	}
	a.call(get, "/api/v1/admin/audit", nil, "", 401, true)
	a.call(get, "/api/v1/admin/events?after=0&limit=10", admin, "", 200, true)
	a.call(get, "/api/v1/admin/events?after=x", admin, "", 400, false)
	a.call(get, "/api/v1/admin/events", nil, "", 401, true)
	a.call(post, "/api/v1/admin/events/no-such-event/replay", admin, "", 404, true)
	a.call(post, "/api/v1/admin/events/no-such-event/replay", nil, "", 401, true)

	// The waiting room.
	a.call(put, "/api/v1/products/q-1", admin, `{"name":"Drop","price_cents":100,"stock":2,"admission":"queue","sale":"drop-1","admission_factor":1.5}`, 200, true)
	var tk struct{ Ticket string }
	if err := json.Unmarshal(a.call(post, "/api/v1/products/q-1/queue", nil, `{"user_id":"u-9"}`, 202, true), &tk); err != nil || tk.Ticket == "" {
		t.Fatalf("join: %v", err)
	}
	a.call(get, "/api/v1/queue/"+tk.Ticket, nil, "", 200, true)
	a.call(get, "/api/v1/queue/sale:drop-1~nope", nil, "", 404, true)
	a.call(post, "/api/v1/products/hot-1/queue", nil, `{"user_id":"u-9"}`, 409, true)
	a.call(post, "/api/v1/products/nope/queue", nil, `{"user_id":"u-9"}`, 404, true)
	a.call(post, "/api/v1/products/q-1/queue", nil, `{"user_id":"bad user"}`, 400, false)
	a.call(post, "/api/v1/orders", nil, `{"user_id":"u-9","items":[{"sku":"q-1","quantity":1}]}`, 403, true)
	a.call(post, "/api/v1/orders", map[string]string{orderhttp.AdmissionTokenHeader: "not.a.token"}, `{"user_id":"u-9","items":[{"sku":"q-1","quantity":1}]}`, 403, true)

	// /metrics last, so that it shows the calls above.
	metrics := string(a.call(get, "/metrics", nil, "", 200, true))
	for _, want := range []string{
		`flashorder_orders_created_total 5`,
		`flashorder_orders_replayed_total 1`,
		`flashorder_orders_refused_total{code="sold_out"} 1`,
		`flashorder_orders_refused_total{code="limit_exceeded"} 1`,
		`flashorder_orders_refused_total{code="unknown_product"} 1`,
		`flashorder_orders_refused_total{code="idempotency_key_reused"} 1`,
		`flashorder_idempotency_hits_total{result="replayed"} 1`,
		`flashorder_idempotency_hits_total{result="key_reused"} 1`,
		`flashorder_http_requests_total{code="201",method="POST",route="/api/v1/orders"} 6`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Every documented operation was exercised.
	for path, item := range a.doc.Paths.Map() {
		for method := range item.Operations() {
			if a.called[method+" "+path] == 0 {
				t.Errorf("the test never called %s %s", method, path)
			}
		}
	}

	// Unrouted answers use the documented error format.
	errSchema := a.doc.Components.Schemas["Error"].Value
	for _, c := range []struct {
		method, path string
		status       int
	}{{get, "/no/such/route", 404}, {http.MethodDelete, "/api/v1/orders", 405}} {
		req, _ := http.NewRequest(c.method, ts.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if resp.StatusCode != c.status || err != nil {
			t.Fatalf("%s %s: %d, %v", c.method, c.path, resp.StatusCode, err)
		}
		if err := errSchema.VisitJSON(v); err != nil {
			t.Errorf("%s %s: the error body does not fit the Error schema: %v", c.method, c.path, err)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestOpenAPIAuthAnswers drives a server with auth jwt through the order
// operations' 401 and 403 answers, and the users' successes, and validates
// each against openapi.json.
func TestOpenAPIAuthAnswers(t *testing.T) {
	secret := []byte("openapi-jwt-secret-openapi-jwt-secret")
	v, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	_, ts := newTestServer(t, v)
	a := newAPICheck(t, ts.URL)
	bearer := func(sub string) map[string]string {
		tok, err := jwtauth.Mint(secret, sub, "", "", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"Authorization": "Bearer " + tok}
	}
	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	alice, bob := bearer("alice"), bearer("bob")
	const get, put, post = http.MethodGet, http.MethodPut, http.MethodPost

	a.call(put, "/api/v1/products/auth-1", admin, `{"name":"Phone","price_cents":100,"stock":5}`, 200, true)
	var created flashorder.Order
	if err := json.Unmarshal(a.call(post, "/api/v1/orders", alice, `{"items":[{"sku":"auth-1","quantity":1}]}`, 201, true), &created); err != nil {
		t.Fatal(err)
	}
	a.call(post, "/api/v1/orders", nil, `{"user_id":"alice","items":[{"sku":"auth-1","quantity":1}]}`, 401, true)
	a.call(post, "/api/v1/orders", alice, `{"user_id":"bob","items":[{"sku":"auth-1","quantity":1}]}`, 403, true)
	a.call(get, "/api/v1/orders", alice, "", 200, true)
	a.call(get, "/api/v1/orders?user_id=alice", nil, "", 401, true)
	a.call(get, "/api/v1/orders?user_id=alice", bob, "", 403, true)
	a.call(get, "/api/v1/orders/"+created.ID, alice, "", 200, true)
	a.call(get, "/api/v1/orders/"+created.ID, bob, "", 404, true)
	a.call(get, "/api/v1/orders/"+created.ID, map[string]string{"Authorization": "Bearer x.y.z"}, "", 401, true)
	a.call(post, "/api/v1/orders/"+created.ID+"/pay", alice, "", 403, true)
	a.call(post, "/api/v1/orders/"+created.ID+"/pay", nil, "", 401, true)
	a.call(post, "/api/v1/orders/"+created.ID+"/cancel", bob, "", 404, true)
	a.call(post, "/api/v1/orders/"+created.ID+"/cancel", nil, "", 401, true)
	a.call(post, "/api/v1/orders/"+created.ID+"/pay", admin, "", 200, true)
}
