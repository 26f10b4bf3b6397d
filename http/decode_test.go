package http_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	orderhttp "github.com/flashorder/flashorder/http"
)

// decodeCases pins what POST /api/v1/orders answers to odd bodies: status and
// the exact body, error messages included. The decoder has a fast path for
// well-formed bodies; anything it does not take goes to encoding/json, and
// these answers are the ones encoding/json gave before the fast path existed.
var decodeCases = []struct {
	body   string
	status int
	want   string
}{
	{"", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"the body is empty\"}}"},
	{" ", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"the body is empty\"}}"},
	{"null", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"user_id must be 1..64 characters of A-Z a-z 0-9 _ . : -\"}}"},
	{"[]", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"the body must be a JSON object\"}}"},
	{"\"x\"", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"the body must be a JSON object\"}}"},
	{"1", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"the body must be a JSON object\"}}"},
	{"{", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"the body is truncated JSON\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"the body is truncated JSON\"}}"},
	{"{}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"user_id must be 1..64 characters of A-Z a-z 0-9 _ . : -\"}}"},
	{"{\"user_id\":\"u1\"}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"items must hold 1..20 entries\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"items must hold 1..20 entries\"}}"},
	{"{\"user_id\":\"u1\",\"items\":null}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"items must hold 1..20 entries\"}}"},
	{"{\"user_id\":1,\"items\":[]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field user_id must be a string\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1}],\"price_cents\":1}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"unknown field \\\"price_cents\\\"\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1,\"price\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"unknown field \\\"price\\\"\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1.5}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field items.quantity must be an integer in range\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1.0}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field items.quantity must be an integer in range\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":\"1\"}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field items.quantity must be an integer in range\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1e2}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field items.quantity must be an integer in range\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":99999999999999999999}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field items.quantity must be an integer in range\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":-1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"items[0]: quantity must be an integer 1..1000\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":0}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"items[0]: quantity must be an integer 1..1000\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":01}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"malformed JSON at byte 49\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1}]} x", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"unexpected data after the JSON value\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1}]}{}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"unexpected data after the JSON value\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1}]}\n\t ", 201, "{\"id\":\"01J8ZQ4V6Y3K2M5N7P9R1T3W5X\",\"user_id\":\"u1\",\"status\":\"created\",\"items\":[{\"sku\":\"a\",\"quantity\":1,\"price_cents\":199900}],\"total_cents\":199900,\"created_at\":\"2025-01-02T03:04:05.123456Z\"}"},
	{"{\"user_id\":\"u1\",\"items\":{\"sku\":\"a\"}}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field items must be an array\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[1]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field items must be an object\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":1,\"quantity\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field items.sku must be a string\"}}"},
	// encoding/json matches keys case-insensitively and keeps the last of
	// duplicates; the API refuses both (issue 13).
	{"{\"USER_ID\":\"u1\",\"items\":[{\"SKU\":\"a\",\"Quantity\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"unknown field \\\"USER_ID\\\" (field names are lower case)\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"\u017fku\":\"a\",\"quantity\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"unknown field \\\"\u017fku\\\" (field names are lower case)\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"sku\":\"b\",\"quantity\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field \\\"sku\\\" appears twice\"}}"},
	{"{\"user_id\":\"u1\",\"user_id\":\"u2\",\"items\":[{\"sku\":\"a\",\"quantity\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field \\\"user_id\\\" appears twice\"}}"},
	{"{\"user_id\":\"u\\\"1\",\"items\":[{\"sku\":\"a\",\"quantity\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"user_id must be 1..64 characters of A-Z a-z 0-9 _ . : -\"}}"},
	{"{\"user_id\":\"u<1>&\",\"items\":[{\"sku\":\"a\",\"quantity\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"user_id must be 1..64 characters of A-Z a-z 0-9 _ . : -\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1},{\"sku\":\"a\",\"quantity\":2}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"items[1]: sku \\\"a\\\" appears twice\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\\u0022b\",\"quantity\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"items[0]: sku must be 1..64 characters of A-Z a-z 0-9 _ . -\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1}]", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"the body is truncated JSON\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1}],}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"malformed JSON at byte 52\"}}"},
	{"{\"user_id\":\"u1\",\"items\":[{\"sku\":\"a\",\"quantity\":1001}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"items[0]: quantity must be an integer 1..1000\"}}"},
	{"\ufeff{}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"malformed JSON at byte 1\"}}"},
	{"{\"user_id\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"items\":[{\"sku\":\"a\",\"quantity\":1}]}", 400, "{\"error\":{\"code\":\"invalid_request\",\"message\":\"user_id must be 1..64 characters of A-Z a-z 0-9 _ . : -\"}}"},
	{`{"user_id":"u1","items":[{"sku":"a","quantity":1}]}` + strings.Repeat(" ", 70000), 413, `{"error":{"code":"body_too_large","message":"the body exceeds 65536 bytes"}}`},
}

// TestDecodeOrderAnswers checks decodeCases, every body with its trailing
// newline, with the body's length known and with it unknown (chunked), where
// the 64 KiB limit bites while reading.
func TestDecodeOrderAnswers(t *testing.T) {
	s := newServer(orderhttp.Config{Store: benchStore{}}, instantPlacer{created: time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC)}, nil)
	h := s.Handler()
	for _, chunked := range []bool{false, true} {
		for _, tc := range decodeCases {
			req := httptest.NewRequest("POST", "/api/v1/orders", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if chunked {
				req.ContentLength = -1
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.status || w.Body.String() != tc.want+"\n" {
				t.Errorf("chunked %v, body %.80q:\n got %d %s\nwant %d %s", chunked, tc.body, w.Code, w.Body, tc.status, tc.want)
			}
		}
	}
}

// TestContentTypes checks which Content-Type headers an order may carry.
func TestContentTypes(t *testing.T) {
	s := newServer(orderhttp.Config{Store: benchStore{}}, instantPlacer{}, nil)
	h := s.Handler()
	for ct, status := range map[string]int{
		"": 415, "text/plain": 415, "application/jsonx": 415, "application/json; charset": 415,
		"application/json": 201, "application/json; charset=utf-8": 201, "Application/JSON": 201,
		"application/json;": 201, `application/json; charset="utf-8"`: 201,
	} {
		req := httptest.NewRequest("POST", "/api/v1/orders", strings.NewReader(`{"user_id":"u1","items":[{"sku":"a","quantity":1}]}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != status {
			t.Errorf("Content-Type %q: %d %s, want %d", ct, w.Code, w.Body, status)
		}
		if status == 415 && w.Body.String() != `{"error":{"code":"unsupported_media_type","message":"the body must be application/json"}}`+"\n" {
			t.Errorf("Content-Type %q: body %s", ct, w.Body)
		}
	}
}
