package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
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
