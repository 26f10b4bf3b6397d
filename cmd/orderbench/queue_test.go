package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/loadtest"
)

// TestQueueDropEndToEnd runs a drop through the waiting room against an
// embedded orderd: 400 buyers of which 10% bots (2 ids each) for 350 units,
// half of the other buyers joining after T0: the pre-queue (180 buyers and
// 80 bot ids) is admitted at the start, and the stock left goes to the
// buyers who joined after T0, in their order. The audit must pass (no token used
// twice, the bound held, no order without a token, the stock sold exactly)
// and the fairness figures must be computed.
func TestQueueDropEndToEnd(t *testing.T) {
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	js := filepath.Join(t.TempDir(), "queue.json")
	html := filepath.Join(t.TempDir(), "queue.html")
	out, err := runArgs(t, "run", "--url", e.URL, "--admin-token", e.AdminToken, "--scenario", "drop", "--users", "400",
		"--stock", "350", "--lead", "2s", "--late", "2s", "--late-share", "0.5", "--admission", "queue", "--bots", "0.1", "--bot-ids", "2",
		"--concurrency", "32", "--quiet", "--json", js, "--html", html)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	res := readResult(t, js)
	q, a := res.Queue, res.Audit
	if q == nil || a == nil || a.Queue == nil {
		t.Fatalf("queue %+v, audit %+v", q, a)
	}
	if !a.OK || a.Queue.TokensReused != 0 || a.Queue.WithoutToken != 0 || a.Queue.OverBoundConfirmed != 0 || a.Queue.BoundExceeded != 0 ||
		a.Queue.Samples == 0 {
		t.Errorf("audit %+v, queue audit %+v", a.Violations, a.Queue)
	}
	if len(a.SKUs) != 1 || a.SKUs[0].Sold != 350 || a.SKUs[0].After.Available != 0 {
		t.Errorf("not sold exactly: %+v", a.SKUs)
	}
	if q.Admission != loadtest.AdmissionQueue || q.Bots != 40 || q.Buyers != 400 || q.Tickets < 440 || q.PreQueue == 0 {
		t.Errorf("queue result %+v", q)
	}
	if q.TauAfterT0 == nil || *q.TauAfterT0 < -1 || *q.TauAfterT0 > 1 || q.TauN < 2 || q.AdmitOrder != "number" || q.TauByRoundAfterT0 == nil {
		t.Errorf("tau after T0: %v over %d by %q (by round %v)", q.TauAfterT0, q.TauN, q.AdmitOrder, q.TauByRoundAfterT0)
	}
	if pq := q.PreQueueTest; pq == nil || pq.P < 0 || pq.P > 1 || math.IsNaN(pq.Stat) || pq.DF < 0 {
		t.Errorf("pre-queue test %+v", pq)
	}
	if q.EarlyUnits <= 0 || q.EarlyUnits > q.Units || q.EarlyBuyers < q.Bots || q.EarlyBuyers > q.Buyers || q.BotEarlyRatio <= 0 {
		t.Errorf("early buyers %d, their units %d, bots' ratio among them %v", q.EarlyBuyers, q.EarlyUnits, q.BotEarlyRatio)
	}
	if q.Units != 350 || q.BotRatio <= 0 || math.Abs(q.BotBuyerShare-0.1) > 1e-9 {
		t.Errorf("units %d, bots' share %v of units, %v of buyers, ratio %v", q.Units, q.BotUnitShare, q.BotBuyerShare, q.BotRatio)
	}
	// Every bot id that bought tried its token again: 409 admission_used.
	if q.BotUnits > 0 && q.AdmissionUsed != q.BotUnits {
		t.Errorf("%d admission_used answers for %d bot orders", q.AdmissionUsed, q.BotUnits)
	}
	if q.SellOut <= 0 || len(q.Samples) == 0 {
		t.Errorf("sell-out at %v, %d samples", q.SellOut, len(q.Samples))
	}
	for _, want := range []string{"queue      ", "fairness   ", "bots       "} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), "Waiting room") {
		t.Errorf("HTML report (%v): no waiting-room chart", err)
	}
}

// TestBotsWithoutQueue runs the same bots in a drop without the queue: they
// order directly with their ids, and the report counts every unit, the
// bots' and the other buyers'.
func TestBotsWithoutQueue(t *testing.T) {
	e, err := startEmbedded(context.Background(), t.TempDir(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	js := filepath.Join(t.TempDir(), "bots.json")
	out, err := runArgs(t, "run", "--url", e.URL, "--admin-token", e.AdminToken, "--scenario", "drop", "--users", "400",
		"--stock", "100", "--lead", "2s", "--after", "500ms", "--bots", "0.1", "--bot-ids", "3", "--concurrency", "32", "--quiet", "--json", js)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	res := readResult(t, js)
	q := res.Queue
	if q == nil || q.Admission != loadtest.AdmissionOpen || q.Units != 100 || q.BotUnits > q.Units || res.Audit == nil || !res.Audit.OK {
		t.Fatalf("queue %+v, audit %+v", q, res.Audit)
	}
	if !strings.Contains(out, "(without the queue)") {
		t.Errorf("the output lacks the bots' line:\n%s", out)
	}
}
