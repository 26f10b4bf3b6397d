package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// failingPlacer fails every order with an internal error and notes the
// request id it saw in its context.
type failingPlacer struct {
	mu  sync.Mutex
	ids []string
}

func (p *failingPlacer) PlaceOrder(ctx context.Context, _ *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	p.mu.Lock()
	p.ids = append(p.ids, orderhttp.RequestID(ctx))
	p.mu.Unlock()
	return nil, errors.New("database on fire")
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestRequestID(t *testing.T) {
	db, err := gormdb.Open(context.Background(), testenv.SQLiteURL(t), gormdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	placer := &failingPlacer{}
	logs := &syncBuffer{}
	srv := newServer(orderhttp.Config{Store: db, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, placer, nil)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	get := func(method, path, id, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		if id != "" {
			req.Header.Set(orderhttp.RequestIDHeader, id)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// A sane id from the client is echoed as is.
	for _, id := range []string{"abc-123", strings.Repeat("x", orderhttp.MaxRequestIDLength), "~!@#$%^&*()"} {
		if got := get("GET", "/healthz", id, "").Header.Get(orderhttp.RequestIDHeader); got != id {
			t.Errorf("sent request id %q, got back %q", id, got)
		}
	}
	// Anything else is replaced by a generated, unique id.
	seen := map[string]bool{}
	for _, id := range []string{"", strings.Repeat("x", orderhttp.MaxRequestIDLength+1), "has space", "tab\there", "é"} {
		got := get("GET", "/healthz", id, "").Header.Get(orderhttp.RequestIDHeader)
		if got == "" || got == id || seen[got] || len(got) > orderhttp.MaxRequestIDLength {
			t.Errorf("sent request id %q, got back %q (seen before: %v)", id, got, seen[got])
		}
		seen[got] = true
	}

	// A 5xx: the handler's context carries the id, and the error log names it.
	resp := get("POST", "/api/v1/orders", "trace-500", `{"user_id":"u-1","items":[{"sku":"hot-1","quantity":1}]}`)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("failing placer: status %d, want 500", resp.StatusCode)
	}
	if len(placer.ids) != 1 || placer.ids[0] != "trace-500" {
		t.Errorf("request ids seen by the placer: %q, want [trace-500]", placer.ids)
	}
	// An unrouted request gets a debug line too.
	get("GET", "/no/such/route", "trace-404", "")

	var errLine, debug500, debug404 map[string]any
	for _, l := range logs.lines(t) {
		switch {
		case l["level"] == "ERROR" && l["request_id"] == "trace-500":
			errLine = l
		case l["level"] == "DEBUG" && l["msg"] == "request" && l["request_id"] == "trace-500":
			debug500 = l
		case l["level"] == "DEBUG" && l["msg"] == "request" && l["request_id"] == "trace-404":
			debug404 = l
		}
	}
	if errLine == nil || !strings.Contains(errLine["err"].(string), "database on fire") {
		t.Errorf("no error log line with request_id trace-500 and the cause: %v", logs.lines(t))
	}
	if debug500 == nil || debug500["route"] != "/api/v1/orders" || debug500["method"] != "POST" ||
		debug500["status"] != float64(500) || debug500["code"] != "internal" || debug500["duration"] == nil {
		t.Errorf("debug request line for trace-500: %v", debug500)
	}
	if debug404 == nil || debug404["route"] != "unmatched" || debug404["status"] != float64(404) {
		t.Errorf("debug request line for trace-404: %v", debug404)
	}
	if n := len(logs.lines(t)); n != 10+1 {
		t.Errorf("%d log lines, want one per request (10) and one error", n)
	}
}
