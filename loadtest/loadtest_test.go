package loadtest_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/testkit/fakeorderd"
	"github.com/flashorder/flashorder/loadtest"
)

func fakeConfig(url string) loadtest.Config {
	return loadtest.Config{
		URLs:        []string{url},
		AdminToken:  "t",
		Concurrency: 4,
		Requests:    60,
		Scenario:    loadtest.Scenario{Stock: 1000},
	}
}

// TestAuditPassesOnCorrectServer is the control for the broken servers below:
// the same scenario against a correct fake passes the audit.
func TestAuditPassesOnCorrectServer(t *testing.T) {
	srv := httptest.NewServer(fakeorderd.New(fakeorderd.None))
	defer srv.Close()
	cfg := fakeConfig(srv.URL)
	cfg.Scenario = loadtest.Scenario{SKUs: 3, Stock: 1000, MultiShare: 0.5, Users: 10, PerUserLimit: 5, RetryShare: 0.3}
	res, err := loadtest.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !res.Audit.OK || res.Audit.Orders == 0 || res.Audit.Checked != res.Audit.Orders {
		t.Fatalf("audit %+v", res.Audit)
	}
	if res.Requests != 60 {
		t.Errorf("measured %d requests, want 60", res.Requests)
	}
	var answered int64
	for _, a := range res.Answers {
		answered += a.Count
	}
	if answered != res.Requests {
		t.Errorf("answers add up to %d, want %d", answered, res.Requests)
	}
}

// TestAuditCatchesBrokenServers runs against fakes that break one invariant
// each; the audit must fail with a violation of the right kind.
func TestAuditCatchesBrokenServers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault fakeorderd.Fault
		scen  loadtest.Scenario
		want  string
	}{
		{"lost order", fakeorderd.LoseOrder, loadtest.Scenario{Stock: 1000}, "lost order"},
		{"oversell", fakeorderd.Oversell, loadtest.Scenario{Stock: 1000}, "oversold"},
		{"one id for two keys", fakeorderd.DoubleID, loadtest.Scenario{Stock: 1000}, "order answered twice"},
		{"stock taken without orders", fakeorderd.PhantomStock, loadtest.Scenario{Stock: 1000}, "stock taken"},
		{"per-user limit", fakeorderd.IgnoreLimit, loadtest.Scenario{Stock: 1000, Users: 3, PerUserLimit: 2}, "per-user limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(fakeorderd.New(tc.fault))
			defer srv.Close()
			cfg := fakeConfig(srv.URL)
			cfg.Scenario = tc.scen
			res, err := loadtest.Run(context.Background(), cfg)
			if !errors.Is(err, loadtest.ErrAuditFailed) {
				t.Fatalf("run returned %v, want ErrAuditFailed", err)
			}
			if res == nil || res.Audit == nil || res.Audit.OK {
				t.Fatalf("audit %+v, want a failed audit", res)
			}
			if !strings.Contains(strings.Join(res.Audit.Violations, "\n"), tc.want) {
				t.Errorf("violations do not mention %q:\n%s", tc.want, strings.Join(res.Audit.Violations, "\n"))
			}
		})
	}
}

// TestOpenLoopChargesWaiting: a server slower than the offered rate makes
// requests wait for a free client; they are counted late and their latency
// runs from the intended send time, not from when they finally left.
func TestOpenLoopChargesWaiting(t *testing.T) {
	fake := fakeorderd.New(fakeorderd.None)
	fake.Delay = 20 * time.Millisecond
	srv := httptest.NewServer(fake)
	defer srv.Close()
	cfg := fakeConfig(srv.URL)
	cfg.Requests = 0
	cfg.Concurrency = 1 // at most ~50 answers/s
	cfg.Rate = 200
	cfg.Duration = 500 * time.Millisecond
	res, err := loadtest.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Mode != "open" || res.OfferedRate != 200 {
		t.Errorf("mode %s offered %v, want open 200", res.Mode, res.OfferedRate)
	}
	if res.Late == 0 {
		t.Errorf("no late requests at 4x the server's capacity")
	}
	if res.NotSent == 0 {
		t.Errorf("no unsent requests at 4x the server's capacity")
	}
	if res.Requests+res.NotSent < 90 {
		t.Errorf("sent %d + not sent %d, want about 100 due", res.Requests, res.NotSent)
	}
	// Served one at a time at 20ms each, the later requests waited far longer
	// than 20ms after their intended time.
	if res.Latency.Max < 100 {
		t.Errorf("max latency %.1fms: waiting before the send is not charged", res.Latency.Max)
	}
	if !res.Audit.OK {
		t.Errorf("audit: %v", res.Audit.Violations)
	}
}

// TestOpenLoopOnTime: a fast server keeps up with a modest rate.
func TestOpenLoopOnTime(t *testing.T) {
	srv := httptest.NewServer(fakeorderd.New(fakeorderd.None))
	defer srv.Close()
	cfg := fakeConfig(srv.URL)
	cfg.Requests = 100
	cfg.Rate = 200
	cfg.LateThreshold = 20 * time.Millisecond // -race on a busy machine
	res, err := loadtest.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Requests != 100 || res.NotSent != 0 {
		t.Errorf("requests %d not sent %d, want 100 and 0", res.Requests, res.NotSent)
	}
	if res.Seconds < 0.4 || res.Seconds > 2 {
		t.Errorf("100 requests at 200/s took %.2fs, want about 0.5s", res.Seconds)
	}
}

// TestInterruptedRunIsAudited: a run cut short still audits, allowing for the
// requests whose outcome it never learnt.
func TestInterruptedRunIsAudited(t *testing.T) {
	fake := fakeorderd.New(fakeorderd.None)
	fake.Delay = 30 * time.Millisecond
	srv := httptest.NewServer(fake)
	defer srv.Close()
	cfg := fakeConfig(srv.URL)
	cfg.Requests = 0
	cfg.Duration = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := loadtest.Run(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, loadtest.ErrAuditFailed) {
		t.Fatalf("run returned %v, want interrupted without an audit failure", err)
	}
	if res == nil || res.Audit == nil || !res.Audit.OK || res.Audit.Orders == 0 {
		t.Fatalf("audit of the interrupted run: %+v", res)
	}
}

// TestWarmupAndRequests: --requests counts the requests sent after the
// warmup, exactly; warmup answers are in the series but not the summary, and
// the audit covers both.
func TestWarmupAndRequests(t *testing.T) {
	fake := fakeorderd.New(fakeorderd.None)
	fake.Delay = 2 * time.Millisecond
	srv := httptest.NewServer(fake)
	defer srv.Close()
	cfg := fakeConfig(srv.URL)
	cfg.Warmup = 300 * time.Millisecond
	cfg.Requests = 80
	res, err := loadtest.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Requests != 80 || res.Orders != 80 || res.Latency.Count != 80 {
		t.Errorf("requests %d orders %d latency count %d, want 80 each", res.Requests, res.Orders, res.Latency.Count)
	}
	var warm, all int64
	for _, iv := range res.Series {
		all += iv.Answers
		if iv.Warmup {
			warm += iv.Answers
		}
	}
	if warm == 0 || all <= 80 {
		t.Errorf("series: %d answers, %d in warmup; want warmup answers beyond the 80", all, warm)
	}
	if res.Audit.Orders != int(all) {
		t.Errorf("audit covered %d orders, want all %d (warmup included)", res.Audit.Orders, all)
	}
}

// liveAndDead returns a configuration with two targets: a correct fake
// orderd and an address nothing listens on.
func liveAndDead(t *testing.T) loadtest.Config {
	srv := httptest.NewServer(fakeorderd.New(fakeorderd.None))
	t.Cleanup(srv.Close)
	dead := httptest.NewServer(nil)
	deadURL := dead.URL
	dead.Close()
	cfg := fakeConfig(srv.URL)
	cfg.URLs = []string{srv.URL, deadURL}
	return cfg
}

// TestOnAnswerAndRefused sends to a correct fake and to a port where nothing
// listens: OnAnswer sees every answer with its target, and the dead target's
// answers are connection_refused, not a generic transport error.
func TestOnAnswerAndRefused(t *testing.T) {
	for _, std := range []bool{false, true} {
		t.Run(map[bool]string{false: "raw", true: "net/http"}[std], func(t *testing.T) {
			cfg := liveAndDead(t)
			cfg.StdHTTP = std
			var mu sync.Mutex
			byTarget := map[int]map[loadtest.Answer]int{}
			cfg.OnAnswer = func(e loadtest.AnswerEvent) {
				mu.Lock()
				defer mu.Unlock()
				if byTarget[e.Target] == nil {
					byTarget[e.Target] = map[loadtest.Answer]int{}
				}
				byTarget[e.Target][e.Answer]++
				if e.Done.Before(e.Sent) || (e.Answer.Status == 201 && e.Order == "") {
					t.Errorf("bad event %+v", e)
				}
			}
			res, err := loadtest.Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if n := byTarget[0][loadtest.Answer{Status: 201}]; n == 0 || len(byTarget[0]) != 1 {
				t.Errorf("live target's answers %v, want only 201s", byTarget[0])
			}
			refused := loadtest.Answer{Code: loadtest.CodeRefused}
			if n := byTarget[1][refused]; n == 0 || len(byTarget[1]) != 1 {
				t.Errorf("dead target's answers %v, want only %v", byTarget[1], refused)
			}
			if got := byTarget[0][loadtest.Answer{Status: 201}] + byTarget[1][refused]; int64(got) != res.Requests {
				t.Errorf("OnAnswer saw %d answers, the run %d", got, res.Requests)
			}
		})
	}
}

// TestStickyClients: with Sticky, client i sends every order to URL i mod n,
// so a client that found a dead target keeps failing there and the other
// clients' orders all reach the live one; without it every client rotates
// over both (TestOnAnswerAndRefused).
func TestStickyClients(t *testing.T) {
	cfg := liveAndDead(t)
	cfg.Sticky = true
	var mu sync.Mutex
	targets := map[int]map[int]bool{} // client (by key prefix) -> targets
	cfg.OnAnswer = func(e loadtest.AnswerEvent) {
		mu.Lock()
		defer mu.Unlock()
		parts := strings.Split(e.Key, "-") // RUNID-CLIENT-SEQ
		id, err := strconv.Atoi(parts[len(parts)-2])
		if err != nil {
			t.Errorf("key %q: %v", e.Key, err)
			return
		}
		if targets[id] == nil {
			targets[id] = map[int]bool{}
		}
		targets[id][e.Target] = true
	}
	if _, err := loadtest.Run(context.Background(), cfg); err != nil {
		t.Fatalf("run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(targets) < 2 {
		t.Fatalf("answers from %d clients, want several", len(targets))
	}
	for id, ts := range targets {
		if len(ts) != 1 || !ts[id%2] {
			t.Errorf("client %d sent to targets %v, want only %d", id, ts, id%2)
		}
	}
}
