package loadtest

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/flashorder/flashorder/relay"
)

// webhookTolerance is how far a webhook's timestamp may be from now: the
// Standard Webhooks default, as EVENTS.md's consumer uses.
const webhookTolerance = 5 * time.Minute

// WebhookReceiver is an endpoint for orderd's webhook sink (orderd --events
// URL --events-secret Secret): it verifies each delivery's Standard
// Webhooks signature and hands the event to the run in progress
// (Config.EventsReceiver). It answers 204 to every signed delivery, also
// between runs (those events are dropped), so that the relay never backs
// off because of it, and 401 to one whose signature does not verify.
type WebhookReceiver struct {
	secret string
	ln     net.Listener
	srv    *http.Server
	done   chan struct{}

	mu  sync.Mutex
	log *eventLog // the run's; nil between runs
}

// NewWebhookSecret returns a new signing secret: whsec_ and the base64 of
// 32 random bytes.
func NewWebhookSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// NewWebhookReceiver listens on listen (host:port; port 0 picks a free one)
// for webhooks signed with secret. Close it when done.
func NewWebhookReceiver(listen, secret string) (*WebhookReceiver, error) {
	if _, err := relay.ParseSecret(secret); err != nil {
		return nil, fmt.Errorf("loadtest: events secret: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("loadtest: events webhook receiver: %w", err)
	}
	w := &WebhookReceiver{secret: secret, ln: ln, done: make(chan struct{})}
	w.srv = &http.Server{Handler: w, ReadHeaderTimeout: 10 * time.Second}
	go func() { defer close(w.done); _ = w.srv.Serve(ln) }()
	return w, nil
}

// URL is the endpoint to give orderd's --events.
func (w *WebhookReceiver) URL() string { return "http://" + w.ln.Addr().String() + "/events" }

// Secret is the signing secret to give orderd's --events-secret.
func (w *WebhookReceiver) Secret() string { return w.secret }

// Close stops the receiver.
func (w *WebhookReceiver) Close() error {
	err := w.srv.Close()
	<-w.done
	return err
}

// ServeHTTP receives one webhook.
func (w *WebhookReceiver) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/events" {
		http.NotFound(rw, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	at := time.Now()
	if err != nil {
		http.Error(rw, "read the body", http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	log := w.log
	w.mu.Unlock()
	if _, err := relay.Verify(w.secret, r.Header, body, at, webhookTolerance); err != nil {
		if log != nil {
			log.reject(fmt.Sprintf("a webhook refused (%v): %.120q", err, body))
		}
		http.Error(rw, "bad signature", http.StatusUnauthorized)
		return
	}
	if log != nil {
		log.receive(body, at)
	}
	rw.WriteHeader(http.StatusNoContent)
}

// attach makes the receiver hand its deliveries to log, until detached.
func (w *WebhookReceiver) attach(log *eventLog) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.log != nil {
		return errors.New("loadtest: the events webhook receiver serves another run")
	}
	w.log = log
	return nil
}

// webhookSource is a run's attachment to a WebhookReceiver.
type webhookSource struct{ w *WebhookReceiver }

func (s webhookSource) problem() string { return "" }

func (s webhookSource) close() {
	s.w.mu.Lock()
	s.w.log = nil
	s.w.mu.Unlock()
}
