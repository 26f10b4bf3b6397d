package relay

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flashorder/flashorder"
)

var _ ConcurrentPublisher = (*Webhook)(nil)

// The Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts a Standard Webhooks secret: "whsec_" and the key in
// base64.
const SecretPrefix = "whsec_"

// DefaultWebhookInFlight is how many deliveries, of different orders, a
// Webhook has in flight at once.
const DefaultWebhookInFlight = 16

// DefaultWebhookTimeout bounds one delivery: a slow endpoint counts as a
// failed attempt.
const DefaultWebhookTimeout = 10 * time.Second

// Webhook delivers events by HTTP POST to one endpoint, the body the
// CloudEvent (structured mode, application/cloudevents+json), signed per the
// Standard Webhooks specification: webhook-id is the event id, by which the
// receiver drops repeats; webhook-signature is "v1," and the base64
// HMAC-SHA256, keyed by the secret, of "id.timestamp.body". Any 2xx answer
// counts as delivered; anything else, redirects included, as a failed
// attempt.
type Webhook struct {
	url    string
	key    []byte
	client *http.Client
	// Timeout bounds one delivery; the default is DefaultWebhookTimeout.
	Timeout time.Duration
	// InFlight is how many deliveries the relay runs at once, each of
	// another order (ConcurrentPublisher); the default is
	// DefaultWebhookInFlight. 1 delivers one event at a time.
	InFlight int
	// Now returns the time of the webhook-timestamp header; the default
	// is time.Now.
	Now flashorder.Clock
}

// NewWebhook returns the webhook sink to rawURL (CheckWebhookURL), signing
// with secret (ParseSecret).
func NewWebhook(rawURL, secret string) (*Webhook, error) {
	if err := CheckWebhookURL(rawURL); err != nil {
		return nil, err
	}
	key, err := ParseSecret(secret)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4 * DefaultWebhookInFlight // keep a connection per delivery in flight
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Webhook{url: rawURL, key: key, client: client, Timeout: DefaultWebhookTimeout, InFlight: DefaultWebhookInFlight, Now: time.Now}, nil
}

// CheckWebhookURL accepts an https:// URL, or an http:// one whose host is
// the loopback interface (a receiver on the same machine): an event holds an
// order and its buyer, which must not cross a network in the clear.
func CheckWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("relay: webhook URL: want https://host/path (or http://127.0.0.1:port/path)")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("relay: webhook URL %s: http:// only on loopback (localhost, 127.0.0.1, ::1); use https://", u.Redacted())
	}
	return fmt.Errorf("relay: webhook URL scheme %q: want https (or http on loopback)", u.Scheme)
}

// ParseSecret returns the key of a Standard Webhooks secret, "whsec_" and
// base64 (standard alphabet) of at least 24 bytes.
func ParseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, errors.New("relay: webhook secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("relay: webhook secret: not whsec_ and base64: %w", err)
	}
	if len(key) < 24 {
		return nil, fmt.Errorf("relay: webhook secret: %d bytes of key, want at least 24", len(key))
	}
	return key, nil
}

// Sign returns the webhook-signature value of a message: "v1," and the
// base64 HMAC-SHA256 of "id.timestamp.body" keyed by key.
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(timestamp, 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks a received webhook as a consumer does: the secret's
// signature over the webhook-id, webhook-timestamp and body is among the
// webhook-signature header's space-separated signatures, and the timestamp
// is within tolerance of now (against replays). It returns the webhook-id.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) (string, error) {
	key, err := ParseSecret(secret)
	if err != nil {
		return "", err
	}
	id, ts := h.Get(HeaderID), h.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return "", errors.New("relay: webhook-id or webhook-timestamp missing")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return "", errors.New("relay: webhook-timestamp too far from now")
	}
	want := Sign(key, id, sec, body)
	for _, sig := range strings.Fields(h.Get(HeaderSignature)) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return id, nil
		}
	}
	return "", errors.New("relay: no valid webhook-signature")
}

// MaxInFlight implements ConcurrentPublisher: InFlight, at least 1.
func (w *Webhook) MaxInFlight() int { return max(1, w.InFlight) }

// Publish implements flashorder.EventPublisher; it is safe for concurrent
// use.
func (w *Webhook) Publish(ctx context.Context, e *flashorder.Event, cloudEvent []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(cloudEvent))
	if err != nil {
		return fmt.Errorf("relay: webhook request: %w", err)
	}
	ts := w.Now().Unix()
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set(HeaderID, e.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.key, e.ID, ts, cloudEvent))
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("relay: webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("relay: webhook answered %d", resp.StatusCode)
	}
	return nil
}
