package relay_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/flashorder/flashorder/relay"
)

// TestSignStandardWebhooks checks Sign against the Standard Webhooks
// specification's example (its reference libraries test the same).
func TestSignStandardWebhooks(t *testing.T) {
	key, err := relay.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := relay.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

// TestVerify checks a consumer's verification: a good signature among
// several passes; a changed body, a wrong key or a stale timestamp fails.
func TestVerify(t *testing.T) {
	key, _ := relay.ParseSecret(testSecret)
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"e1"}`)
	h := http.Header{}
	h.Set(relay.HeaderID, "e1")
	h.Set(relay.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(relay.HeaderSignature, "v1,bm90IGl0 "+relay.Sign(key, "e1", now.Unix(), body))
	if id, err := relay.Verify(testSecret, h, body, now, time.Minute); err != nil || id != "e1" {
		t.Fatalf("Verify = %q, %v", id, err)
	}
	if _, err := relay.Verify(testSecret, h, []byte(`{"id":"e2"}`), now, time.Minute); err == nil {
		t.Error("a changed body verified")
	}
	other := "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
	if _, err := relay.Verify(other, h, body, now, time.Minute); err == nil {
		t.Error("another key verified")
	}
	if _, err := relay.Verify(testSecret, h, body, now.Add(10*time.Minute), time.Minute); err == nil {
		t.Error("a stale timestamp verified")
	}
}

// TestCheckWebhookURL checks which endpoints a webhook may have.
func TestCheckWebhookURL(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://hooks.example.com/flashorder": true,
		"http://127.0.0.1:9000/hook":           true,
		"http://localhost/hook":                true,
		"http://[::1]:80/hook":                 true,
		"http://hooks.example.com/hook":        false,
		"http://10.0.0.5/hook":                 false,
		"ftp://example.com/":                   false,
		"nats://127.0.0.1:4222/orders":         false,
		"https:///nohost":                      false,
		"":                                     false,
	} {
		if err := relay.CheckWebhookURL(url); (err == nil) != ok {
			t.Errorf("CheckWebhookURL(%q) = %v, want ok %v", url, err, ok)
		}
	}
}

// TestParseSecret checks the whsec_ secrets.
func TestParseSecret(t *testing.T) {
	for s, ok := range map[string]bool{
		testSecret:                         true,
		"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": false, // no prefix
		"whsec_not base64!":                false,
		"whsec_c2hvcnQ=":                   false, // 5 bytes
	} {
		if _, err := relay.ParseSecret(s); (err == nil) != ok {
			t.Errorf("ParseSecret(%q) = %v, want ok %v", s, err, ok)
		}
	}
}
