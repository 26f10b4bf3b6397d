package http_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
)

const testSecret = "0x4AAAAAAA-test-secret"

// fakeVerifier is a siteverify server. It checks every request's form and
// answers by the token: "good" passes, "bad" is rejected, "status-500",
// "slow", "garbage", "no-success" and "bad-secret" make it fail in those
// ways.
type fakeVerifier struct {
	t        *testing.T
	srv      *httptest.Server
	calls    atomic.Int64
	remoteIP atomic.Value // string: the remoteip the last request sent
	release  chan struct{}
}

func newFakeVerifier(t *testing.T) *fakeVerifier {
	t.Helper()
	f := &fakeVerifier{t: t, release: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.release)
		f.srv.Close()
	})
	return f
}

func (f *fakeVerifier) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		f.t.Errorf("verifier got %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
	}
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("verifier: form: %v", err)
	}
	if got := r.PostForm.Get("secret"); got != testSecret {
		f.t.Errorf("verifier got secret %q", got)
	}
	f.remoteIP.Store(r.PostForm.Get("remoteip"))
	w.Header().Set("Content-Type", "application/json")
	switch token := r.PostForm.Get("response"); token {
	case "good":
		_, _ = w.Write([]byte(`{"success":true,"challenge_ts":"2026-12-02T05:00:00Z","hostname":"shop.example","error-codes":[]}`))
	case "bad":
		_, _ = w.Write([]byte(`{"success":false,"error-codes":["invalid-input-response"]}`))
	case "used":
		_, _ = w.Write([]byte(`{"success":false,"error-codes":["timeout-or-duplicate"]}`))
	case "bad-secret":
		_, _ = w.Write([]byte(`{"success":false,"error-codes":["invalid-input-secret"]}`))
	case "status-500":
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"success":true}`))
	case "slow":
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
	case "garbage":
		_, _ = w.Write([]byte(`<html>maintenance</html>`))
	case "no-success":
		_, _ = w.Write([]byte(`{"error-codes":[]}`))
	default:
		f.t.Errorf("verifier got unexpected token %q", token)
		w.WriteHeader(http.StatusBadRequest)
	}
}

func newTestVerifier(t *testing.T, f *fakeVerifier) *orderhttp.ChallengeVerifier {
	t.Helper()
	v, err := orderhttp.NewChallengeVerifier(f.srv.URL+"/siteverify", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	v.Timeout = 200 * time.Millisecond
	t.Cleanup(v.Client.CloseIdleConnections)
	return v
}

func TestChallenge(t *testing.T) {
	f := newFakeVerifier(t)
	v := newTestVerifier(t, f)
	for _, c := range []struct {
		name, token string
		status      int
		code        string
		askVerifier bool
	}{
		{"success", "good", http.StatusOK, "", true},
		{"rejected token", "bad", http.StatusForbidden, flashorder.ECHALLENGEFAILED, true},
		{"token used before", "used", http.StatusForbidden, flashorder.ECHALLENGEFAILED, true},
		{"missing token", "", http.StatusForbidden, flashorder.ECHALLENGEFAILED, false},
		{"blank token", "  ", http.StatusForbidden, flashorder.ECHALLENGEFAILED, false},
		{"oversized token", strings.Repeat("t", orderhttp.MaxChallengeTokenBytes+1), http.StatusForbidden, flashorder.ECHALLENGEFAILED, false},
		{"verifier 500", "status-500", http.StatusServiceUnavailable, flashorder.EUNAVAILABLE, true},
		{"verifier timeout", "slow", http.StatusServiceUnavailable, flashorder.EUNAVAILABLE, true},
		{"malformed JSON", "garbage", http.StatusServiceUnavailable, flashorder.EUNAVAILABLE, true},
		{"no success field", "no-success", http.StatusServiceUnavailable, flashorder.EUNAVAILABLE, true},
		{"secret refused", "bad-secret", http.StatusServiceUnavailable, flashorder.EUNAVAILABLE, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := request("203.0.113.9:5000")
			if c.token != "" {
				r.Header.Set(orderhttp.ChallengeHeader, c.token)
			}
			client := netip.MustParseAddr("198.51.100.1")
			before := f.calls.Load()
			f.remoteIP.Store("")
			start := time.Now()
			err := v.Check(context.Background(), r, client)
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("Check took %v, beyond its timeout", elapsed)
			}
			if asked := f.calls.Load() > before; asked != c.askVerifier {
				t.Errorf("verifier asked: %v, want %v", asked, c.askVerifier)
			}
			if c.askVerifier && f.remoteIP.Load() != "198.51.100.1" {
				t.Errorf("verifier got remoteip %q", f.remoteIP.Load())
			}
			if got := flashorder.ErrorCode(err); got != c.code {
				t.Fatalf("Check: %v; want code %q", err, c.code)
			}
			if err == nil {
				return
			}
			if strings.Contains(flashorder.ErrorMessage(err), testSecret) {
				t.Errorf("the message shows the secret: %q", flashorder.ErrorMessage(err))
			}
			w := httptest.NewRecorder()
			orderhttp.WriteError(w, err, 0)
			var body struct {
				Error struct{ Code, Message string }
			}
			if jerr := json.Unmarshal(w.Body.Bytes(), &body); jerr != nil || w.Code != c.status || body.Error.Code != c.code {
				t.Fatalf("answer %d %q, want %d %s", w.Code, w.Body.String(), c.status, c.code)
			}
			if ra := w.Header().Get("Retry-After"); (c.status == http.StatusServiceUnavailable) != (ra == "1") {
				t.Errorf("%d with Retry-After %q", w.Code, ra)
			}
		})
	}
}

// TestChallengeVerifierDown: a verifier that does not listen fails closed.
func TestChallengeVerifierDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	v, err := orderhttp.NewChallengeVerifier(url, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	err = v.Verify(context.Background(), "good", netip.Addr{})
	if flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE {
		t.Fatalf("Verify against a closed port: %v, want unavailable", err)
	}
}

func TestNewChallengeVerifier(t *testing.T) {
	for _, c := range []struct{ url, secret string }{
		{"", "s"},
		{"challenges.cloudflare.com/turnstile/v0/siteverify", "s"},
		{"ftp://example.com/siteverify", "s"},
		{"https:///siteverify", "s"},
		{"https://api.hcaptcha.com/siteverify", ""},
	} {
		if _, err := orderhttp.NewChallengeVerifier(c.url, c.secret); err == nil {
			t.Errorf("NewChallengeVerifier(%q, %q): no error", c.url, c.secret)
		}
	}
	v, err := orderhttp.NewChallengeVerifier("https://challenges.cloudflare.com/turnstile/v0/siteverify", "s")
	if err != nil || v.Timeout != orderhttp.DefaultChallengeTimeout {
		t.Fatalf("NewChallengeVerifier: %v, timeout %v", err, v)
	}
}
