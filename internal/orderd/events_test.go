package orderd

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/relay"
)

// TestOrderdEvents runs orderd with --events on a webhook receiver: an order
// placed and cancelled through the API reaches it as two signed CloudEvents,
// the second failing once and retried, and the relay's metrics count them.
func TestOrderdEvents(t *testing.T) {
	secret := relay.SecretPrefix + base64.StdEncoding.EncodeToString([]byte("orderd-events-test-secret-32-byte"))
	var mu sync.Mutex
	var got []map[string]any
	calls := 0
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := relay.Verify(secret, r.Header, body, time.Now(), time.Minute); err != nil {
			t.Errorf("delivery: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls == 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ce map[string]any
		_ = json.Unmarshal(body, &ce)
		got = append(got, ce)
	}))
	defer rc.Close()
	_, c := startOrderd(t, testenv.SQLiteURL(t), "--events", rc.URL+"/hook", "--events-secret", secret, "--events-max-attempts", "3")
	putProduct(t, c, "ev", 5, 0)
	o := create(t, c, "u-ev", "ev", 1)
	if _, err := c.CancelOrder(context.Background(), o.ID); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "two events delivered", 30*time.Second, func() bool { return metric(t, c, "flashorder_events_published_total") == 2 })
	mu.Lock()
	if len(got) != 2 || got[0]["type"] != "order.created" || got[1]["type"] != "order.cancelled" || got[1]["subject"] != o.ID {
		t.Errorf("receiver got %v", got)
	}
	mu.Unlock()
	if n := metric(t, c, "flashorder_events_publish_failures_total"); n != 1 {
		t.Errorf("publish failures %v, want 1", n)
	}
	if n := metric(t, c, "flashorder_events_relay_leader"); n != 1 {
		t.Errorf("relay leader %v, want 1", n)
	}
	req, _ := http.NewRequest(http.MethodGet, c.BaseURL+"/api/v1/admin/events", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.Count(string(body), `"state":"sent"`) != 2 {
		t.Errorf("admin feed: %d %s", resp.StatusCode, body)
	}
}

// TestEventsFlags checks the --events flags' validation.
func TestEventsFlags(t *testing.T) {
	secret := relay.SecretPrefix + base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--events", "https://hooks.example.com/x", "--events-secret", secret}, true},
		{[]string{"--events", "http://127.0.0.1:9/x", "--events-secret", secret, "--events-max-attempts", "1"}, true},
		{[]string{"--events", "https://hooks.example.com/x"}, false},
		{[]string{"--events", "http://hooks.example.com/x", "--events-secret", secret}, false},
		{[]string{"--events-secret", secret}, false},
		{[]string{"--events", "https://hooks.example.com/x", "--events-secret", secret, "--events-max-attempts", "0"}, false},
		{[]string{"--events", "https://hooks.example.com/x", "--events-secret", secret, "--events-retention", "0"}, true},
		{[]string{"--events", "https://hooks.example.com/x", "--events-secret", secret, "--events-retention", "-1h"}, false},
	} {
		m := NewMain(io.Discard)
		err := m.ParseFlags(c.args, func(string) string { return "" })
		if (err == nil) != c.ok {
			t.Errorf("%v: %v, want ok %v", c.args, err, c.ok)
		}
	}
}
