package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/loadtest"
	"github.com/flashorder/flashorder/relay"
)

// eventsURL returns an --events URL on the services' 3-node NATS cluster
// with a subject prefix of the test's own, whose stream is deleted when the
// test ends.
func eventsURL(t *testing.T) string {
	t.Helper()
	servers := testenv.NATSURL(t)
	prefix := testenv.NATSPrefix(t, servers, "orderbench", relay.StreamName)
	return servers + "/" + prefix
}

// TestRunEvents runs orderd with --events on the services' NATS cluster and
// PostgreSQL, and orderbench run with the same --events: carts with keys, a
// user pool and retries of the same key (replays, one order each). The run
// consumes the stream, waits for the relay to drain, and its audit passes:
// every 201 has exactly one order.created, no gap, no orphan, the publish
// lag measured for every event.
func TestRunEvents(t *testing.T) {
	events := eventsURL(t)
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr, "--db", testenv.PostgresURL(t), "--events", events)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	js := filepath.Join(t.TempDir(), "r.json")
	out, err := runArgs(t, "run", "--url", e.URL, "--admin-token", e.AdminToken, "--scenario", "sale", "--retry-share", "0.1",
		"--requests", "600", "--concurrency", "16", "--quiet", "--events", events, "--json", js)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	res := readResult(t, js)
	a := res.Audit
	if a == nil || !a.OK || a.Events == nil {
		t.Fatalf("audit %+v", a)
	}
	ev := a.Events
	if !ev.Drained || ev.Created != a.Orders || a.Orders == 0 || ev.Consumed != ev.Created || ev.Missing+ev.Repeated+ev.Gaps+ev.Orphans+ev.Mismatched != 0 ||
		ev.Lag.Count != int64(ev.Consumed) || ev.Deliveries != int64(ev.Consumed)+ev.Duplicates || ev.URL != events {
		t.Errorf("%d orders answered 201; events audit %+v", a.Orders, ev)
	}
	for _, want := range []string{"audit: OK", "events: ", "duplicates dropped", "0 missing, 0 repeated, 0 gaps, 0 orphans", "publish lag"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
}

// TestRunEventsNotDelivered runs orderbench with --events on a subject
// prefix orderd does not publish to: no event comes, and the audit fails
// after --events-wait, every 201 missing its order.created.
func TestRunEventsNotDelivered(t *testing.T) {
	events := eventsURL(t)
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	js := filepath.Join(t.TempDir(), "r.json")
	out, err := runArgs(t, "run", "--url", e.URL, "--admin-token", e.AdminToken, "--requests", "50", "--concurrency", "4",
		"--quiet", "--events", events, "--events-wait", "2s", "--json", js)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("run: %v, want a failed audit", err)
	}
	res := readResult(t, js)
	ev := res.Audit.Events
	if res.Audit.OK || ev == nil || ev.Drained || ev.Missing != res.Audit.Orders || res.Audit.Orders == 0 {
		t.Errorf("audit %+v, events %+v", res.Audit, ev)
	}
	for _, want := range []string{"AUDIT FAILED", "did not deliver the run's events within 2s", "no order.created came", "NOT drained"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
}

// TestDemoEventsWebhook runs the demo's closed-loop sale with --events
// webhook: orderbench starts its receiver, gives the embedded orderd its URL
// and a new secret, verifies every delivery's signature, and audits the
// events: exactly one order.created per 201.
func TestDemoEventsWebhook(t *testing.T) {
	dir := t.TempDir()
	js, html := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	out, err := runArgs(t, "demo", "--closed-loop", "--duration", "2s", "--concurrency", "8", "--stock", "200", "--quiet",
		"--events", "webhook", "--json", js, "--html", html)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	a := readResult(t, js).Audit
	if a == nil || !a.OK || a.Events == nil || a.Orders == 0 {
		t.Fatalf("audit %+v", a)
	}
	if ev := a.Events; !ev.Drained || ev.Created != a.Orders || ev.Consumed != a.Orders || ev.Undecodable != 0 ||
		!strings.HasPrefix(ev.URL, "http://127.0.0.1:") {
		t.Errorf("%d orders answered 201; events audit %+v", a.Orders, ev)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{out, string(page)} {
		if !strings.Contains(text, "0 missing, 0 repeated, 0 gaps, 0 orphans") || !strings.Contains(text, "publish lag") {
			t.Errorf("the output or the HTML report lacks the events audit")
		}
	}
}

// TestRunEventsWebhookNeedsSecret: run cannot verify orderd's webhooks
// without orderd's secret, and says so.
func TestRunEventsWebhookNeedsSecret(t *testing.T) {
	t.Setenv("ORDERD_EVENTS_SECRET", "")
	_, err := runArgs(t, "run", "--admin-token", "x", "--events", "webhook")
	if err == nil || !strings.Contains(err.Error(), "--events-secret") {
		t.Errorf("run --events webhook without a secret: %v", err)
	}
}

// TestRunEventsTransitions runs orderd with auth jwt and --events on the
// services' NATS cluster and PostgreSQL, and orderbench run with the same
// --events, --events-pay 0.2 and --events-cancel 0.2: after the load it
// pays (with the admin token: a user's may not) and cancels those shares
// of its 201s, and the audit passes: every 200 has its order.paid or
// order.cancelled with orderseq 2, none wrong or repeated, the counts in
// the JSON and the report.
func TestRunEventsTransitions(t *testing.T) {
	const secret = "bench-jwt-secret-bench-jwt-secret"
	events := eventsURL(t)
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr, "--db", testenv.PostgresURL(t), "--events", events,
		"--auth", "jwt", "--jwt-secret", secret)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	js := filepath.Join(t.TempDir(), "r.json")
	out, err := runArgs(t, "run", "--url", e.URL, "--admin-token", e.AdminToken, "--jwt-secret", secret, "--scenario", "carts",
		"--requests", "300", "--concurrency", "8", "--quiet", "--events", events, "--events-pay", "0.2", "--events-cancel", "0.2", "--json", js)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	a := readResult(t, js).Audit
	if a == nil || !a.OK || a.Events == nil || a.Orders == 0 {
		t.Fatalf("audit %+v", a)
	}
	ev := a.Events
	share := func(f float64) int { return int(f*float64(a.Orders) + 0.5) }
	if ev.Paid != share(0.2) || ev.Cancelled != share(0.2) || ev.Paid == 0 || ev.Refused+ev.TransitionErrors != 0 ||
		ev.TransitionsMissing+ev.TransitionsWrong+ev.TransitionsRepeated+ev.Missing+ev.Gaps+ev.Orphans != 0 ||
		ev.Consumed != ev.Created+ev.Paid+ev.Cancelled+ev.Expired || !ev.Drained {
		t.Errorf("%d orders answered 201; events audit %+v", a.Orders, ev)
	}
	want := fmt.Sprintf("transitions after the load: %d paid, %d cancelled (200s), 0 refused as moved already, 0 without an answer; "+
		"0 missing their event, 0 wrong, 0 repeated", ev.Paid, ev.Cancelled)
	for _, w := range []string{"audit: OK", want} {
		if !strings.Contains(out, w) {
			t.Errorf("the output lacks %q", w)
		}
	}
}

// TestRunEventsTransitionMissing runs orderd publishing its webhooks
// through a proxy that acknowledges every order.paid and passes it on to
// nobody, the rest to orderbench's receiver: the run pays and cancels, and
// its audit fails, each 200 to a pay missing its order.paid, none of the
// cancels.
func TestRunEventsTransitionMissing(t *testing.T) {
	secret := loadtest.NewWebhookSecret()
	listen := freeAddr(t)
	var dropped atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if bytes.Contains(body, []byte(`"type":"order.paid"`)) {
			dropped.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://"+listen+"/events", bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}))
	defer proxy.Close()
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr, "--events", proxy.URL+"/events", "--events-secret", secret)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	js := filepath.Join(t.TempDir(), "r.json")
	out, err := runArgs(t, "run", "--url", e.URL, "--admin-token", e.AdminToken, "--requests", "100", "--concurrency", "4", "--quiet",
		"--events", "webhook", "--events-listen", listen, "--events-secret", secret, "--events-wait", "3s",
		"--events-pay", "0.3", "--events-cancel", "0.3", "--json", js)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("run: %v, want a failed audit", err)
	}
	a := readResult(t, js).Audit
	if a == nil || a.OK || a.Events == nil || a.Orders == 0 {
		t.Fatalf("audit %+v", a)
	}
	ev := a.Events
	if ev.Paid == 0 || ev.Cancelled == 0 || ev.TransitionsMissing != ev.Paid || int64(ev.Paid) != dropped.Load() ||
		ev.Missing+ev.TransitionsWrong+ev.TransitionsRepeated != 0 {
		t.Errorf("%d order.paid dropped; events audit %+v", dropped.Load(), ev)
	}
	for _, w := range []string{"AUDIT FAILED", "events transition missing: order ", "answered 200 to its pay and no order.paid with orderseq 2 came",
		fmt.Sprintf("%d missing their event", ev.Paid)} {
		if !strings.Contains(out, w) {
			t.Errorf("the output lacks %q", w)
		}
	}
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestEventsTransitionFlags: --events-pay and --events-cancel must be
// shares in 0..1 that add up to at most 1, and need --events; a bad value
// is refused before any request, saying which.
func TestEventsTransitionFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--events-pay", "1.5"}, "events pay share 1.5 is not in 0..1"},
		{[]string{"--events-cancel", "-0.1"}, "events cancel share -0.1 is not in 0..1"},
		{[]string{"--events-pay", "NaN"}, "events pay share NaN is not in 0..1"},
		{[]string{"--events-pay", "0.6", "--events-cancel", "0.5"}, "add up to more than 1"},
		{[]string{"--events-pay", "half"}, `invalid value "half" for flag -events-pay`},
	} {
		args := append([]string{"run", "--url", "http://127.0.0.1:1", "--admin-token", "x", "--quiet", "--events", "nats://127.0.0.1:1/x"}, tc.args...)
		_, err := runArgs(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 1 {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	_, err := runArgs(t, "run", "--url", "http://127.0.0.1:1", "--admin-token", "x", "--quiet", "--events-pay", "0.2")
	if err == nil || !strings.Contains(err.Error(), "they need events") {
		t.Errorf("--events-pay without --events: %v", err)
	}
}
