package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// scriptedServer answers each request on a connection with the next raw
// answer of script (cycling), reading the request with net/http. After
// closeAfter answers on one connection (0: never) it closes it without
// answering the next request, like a server dropping an idle connection.
func scriptedServer(t *testing.T, script []string, closeAfter int) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var requests atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, _ := io.ReadAll(req.Body)
					if req.Header.Get("Idempotency-Key") == "" || len(body) == 0 || req.URL.Path != "/base/api/v1/orders" {
						c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
						return
					}
					if closeAfter > 0 && n == closeAfter {
						return
					}
					requests.Add(1)
					c.Write([]byte(script[n%len(script)]))
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/base", &requests
}

func TestRawClient(t *testing.T) {
	script := []string{
		"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":\"o1\"}",
		"HTTP/1.1 409 Conflict\r\ncontent-length: 30\r\n\r\n{\"error\":{\"code\":\"sold_out\"}}\n",
		"HTTP/1.1 201 Created\r\nIdempotent-Replayed: true\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"id\"\r\n6\r\n:\"o1\"}\r\n0\r\n\r\n",
		"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
	}
	url, _ := scriptedServer(t, script, 0)
	rc, stop, err := newRawClient(context.Background(), []string{url}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer rc.Close()
	var out bytes.Buffer
	want := []struct {
		status   int
		replayed bool
		body     string
	}{
		{201, false, `{"id":"o1"}`},
		{409, false, "{\"error\":{\"code\":\"sold_out\"}}\n"},
		{201, true, `{"id":"o1"}`},
		{503, false, `{}`},
		{201, false, `{"id":"o1"}`}, // a new connection after Connection: close
	}
	for i, w := range want {
		a, resent, err := rc.post(context.Background(), 0, "k1", "", []byte(`{"x":1}`), &out)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if a.status != w.status || a.replayed != w.replayed || out.String() != w.body || resent {
			t.Errorf("request %d: status %d replayed %v resent %v body %q, want %d %v false %q",
				i, a.status, a.replayed, resent, out.String(), w.status, w.replayed, w.body)
		}
	}
	if got := errorCode([]byte("{\"error\":{\"code\":\"sold_out\"}}")); got != "sold_out" {
		t.Errorf("errorCode = %q", got)
	}
}

// TestRawClientResendsOnStaleConnection: a kept-alive connection the server
// closed is redialled and the request resent once, and reported as resent.
func TestRawClientResendsOnStaleConnection(t *testing.T) {
	url, requests := scriptedServer(t, []string{"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"}, 1)
	rc, stop, err := newRawClient(context.Background(), []string{url}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer rc.Close()
	var out bytes.Buffer
	if _, resent, err := rc.post(context.Background(), 0, "k1", "", []byte("{}"), &out); err != nil || resent {
		t.Fatalf("first request: resent %v err %v", resent, err)
	}
	a, resent, err := rc.post(context.Background(), 0, "k2", "", []byte("{}"), &out)
	if err != nil || !resent || a.status != 201 {
		t.Fatalf("second request: status %d resent %v err %v, want 201 resent", a.status, resent, err)
	}
	if requests.Load() != 2 {
		t.Errorf("server answered %d requests, want 2", requests.Load())
	}
}

// TestRawClientCancel: cancelling the context ends a request in flight.
func TestRawClientCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c) // never answers
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	rc, stop, err := newRawClient(ctx, []string{"http://" + ln.Addr().String()}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer rc.Close()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	var out bytes.Buffer
	if _, _, err := rc.post(ctx, 0, "k", "", []byte("{}"), &out); err == nil {
		t.Fatal("want an error after cancel")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if _, err := newRawClientURL("https://example.com"); err == nil {
		t.Error("https: want an error (net/http handles it)")
	}
}

func newRawClientURL(u string) (*rawClient, error) {
	rc, stop, err := newRawClient(context.Background(), []string{u}, time.Second)
	if stop != nil {
		stop()
	}
	return rc, err
}

// TestRawClientGet: a GET carries If-None-Match and no body; the answer's
// ETag and Retry-After are read, a 304 has no body, and a 409's body is read
// as usual.
func TestRawClientGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodGet || r.ContentLength > 0 || r.URL.Path != "/base/api/v1/products/p1":
			w.WriteHeader(http.StatusBadRequest)
		case r.Header.Get("If-None-Match") == `W/"v1"`:
			w.Header().Set("ETag", `W/"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case r.Header.Get("If-None-Match") == "":
			w.Header().Set("ETag", `W/"v1"`)
			fmt.Fprint(w, `{"sku":"p1"}`)
		default:
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"error":{"code":"not_started"}}`)
		}
	}))
	defer srv.Close()
	rc, stop, err := newRawClient(context.Background(), []string{srv.URL + "/base"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer rc.Close()
	var out bytes.Buffer
	for i, tc := range []struct {
		etag, wantETag, wantBody string
		status, retryAfter       int
	}{
		{"", `W/"v1"`, `{"sku":"p1"}`, 200, 0},
		{`W/"v1"`, `W/"v1"`, "", 304, 0},
		{`W/"v0"`, "", `{"error":{"code":"not_started"}}`, 409, 3},
	} {
		a, _, err := rc.send(context.Background(), 0, &message{method: http.MethodGet, path: "/api/v1/products/p1", etag: tc.etag}, &out)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if a.status != tc.status || string(a.etag) != tc.wantETag || a.retryAfter != tc.retryAfter || out.String() != tc.wantBody {
			t.Errorf("request %d: status %d etag %q retry-after %d body %q, want %d %q %d %q", i, a.status, a.etag, a.retryAfter,
				out.String(), tc.status, tc.wantETag, tc.retryAfter, tc.wantBody)
		}
	}
}
