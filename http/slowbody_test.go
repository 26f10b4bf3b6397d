package http_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	orderhttp "github.com/flashorder/flashorder/http"
)

// TestSlowBody checks that order bodies that do not arrive hold no in-flight
// slot, and are answered "request body not received in time" once
// BodyTimeout passes, not "unexpected data after the JSON value".
func TestSlowBody(t *testing.T) {
	s, _ := newRowServer(t, orderhttp.Config{MaxInflight: 1, BodyTimeout: 300 * time.Millisecond}, func() error { return nil })
	if err := s.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })

	type answer struct {
		status int
		body   string
		err    error
	}
	answers := make(chan answer, 3)
	for range 3 {
		conn, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{status: resp.StatusCode, body: string(body)}
		}()
	}
	// While the three bodies stall, the one slot serves orders.
	time.Sleep(50 * time.Millisecond)
	for i := range 3 {
		resp, err := http.Post(s.URL()+"/api/v1/orders", "application/json",
			strings.NewReader(`{"user_id":"u1","items":[{"sku":"p","quantity":1}]}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Errorf("order %d beside stalled bodies: %d %s", i, resp.StatusCode, body)
		}
	}
	for range 3 {
		a := <-answers
		if a.err != nil || a.status != 400 || !strings.Contains(a.body, "request body not received in time") {
			t.Errorf("stalled body: %d %s %v, want 400 request body not received in time", a.status, a.body, a.err)
		}
	}
}
