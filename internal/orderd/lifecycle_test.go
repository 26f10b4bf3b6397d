package orderd

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

const webhookSecret = "test-webhook-secret"

// TestOrderdLifecycle runs pay, cancel, the webhook, expiry and the sweeper
// election end to end on every database.
func TestOrderdLifecycle(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Engine, func(t *testing.T) {
			t.Parallel()
			_, c := startOrderd(t, db.URL, "--payment-webhook-secret", webhookSecret)
			t.Run("PayCancel", func(t *testing.T) { testPayCancel(t, c) })
			t.Run("PayCancelRace", func(t *testing.T) { testPayCancelRace(t, c) })
			t.Run("Webhook", func(t *testing.T) { testWebhook(t, c) })

			// Two instances on the same database electing one sweeper
			// through one shared in-process Locker (real multi-process
			// election needs a shared --lock backend).
			locker := inmem.NewLocker()
			t.Cleanup(func() { locker.Close() })
			fast := []string{"--payment-timeout", "1s", "--sweep-interval", "100ms", "--sweep-batch", "7"}
			a, ca := startOrderdWithLocker(t, db.URL, locker, fast...)
			testenv.WaitFor(t, "instance a to lead", 15*time.Second, func() bool { return metric(t, ca, "flashorder_sweeper_leader") == 1 })
			b, cb := startOrderdWithLocker(t, db.URL, locker, fast...)
			t.Run("ExpiryReturnsStock", func(t *testing.T) { testExpiryReturnsStock(t, ca, cb) })
			t.Run("OneSweeper", func(t *testing.T) { testOneSweeper(t, a, b, ca, cb) })
			assertAudit(t, c)
		})
	}
}

// startOrderdWithLocker is startOrderd with an injected Locker (nil: the
// one --lock names).
func startOrderdWithLocker(t *testing.T, dbURL string, locker flashorder.Locker, args ...string) (*Main, *orderhttp.Client) {
	t.Helper()
	m := newTestMain(t)
	m.SweeperLocker = locker
	// The tests check answers, not latency: on a busy 2-core machine under
	// -race an order can queue for longer than the production default of
	// --order-timeout. A test's own --order-timeout comes later and wins.
	args = append([]string{"--listen", "127.0.0.1:0", "--db", dbURL, "--admin-token", adminToken, "--order-timeout", "2m"}, args...)
	if err := m.ParseFlags(args, func(string) string { return "" }); err != nil {
		t.Fatalf("parse flags: %v", err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("run orderd: %v", err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	c := orderhttp.NewClient(m.URL(), adminToken)
	c.HTTPClient = &http.Client{Transport: transport, Timeout: time.Minute}
	return m, c
}

// newTestMain returns a Main whose log keeps orderd's warnings and errors
// and prints them when t fails.
func newTestMain(t *testing.T) *Main {
	t.Helper()
	logs := &problemLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("orderd's warnings and errors (last %d):\n%s", maxProblemLines, logs)
		}
	})
	return NewMain(logs)
}

// maxProblemLines is how many of orderd's warning and error lines a test
// keeps to print when it fails.
const maxProblemLines = 30

// problemLog keeps orderd's last WARN and ERROR log lines, so that a failed
// test shows why an order got a 5xx; everything else is dropped.
type problemLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *problemLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			continue
		}
		l.mu.Lock()
		if len(l.lines) == maxProblemLines {
			l.lines = l.lines[1:]
		}
		l.lines = append(l.lines, line)
		l.mu.Unlock()
	}
	return len(p), nil
}

func (l *problemLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// metric returns the value of an unlabelled metric from c's /metrics.
func metric(t *testing.T, c *orderhttp.Client, name string) float64 {
	t.Helper()
	v, ok, err := testenv.MetricSum(c.BaseURL, name)
	if err != nil || !ok {
		t.Fatalf("metric %s: %v (found %v)", name, err, ok)
	}
	return v
}

func create(t *testing.T, c *orderhttp.Client, user, sku string, q int64) *flashorder.Order {
	t.Helper()
	res, err := c.CreateOrder(context.Background(), order(user, item(sku, q)), "")
	if err != nil {
		t.Fatalf("order %d of %s for %s: %v", q, sku, user, err)
	}
	return res.Order
}

func statusOf(t *testing.T, c *orderhttp.Client, id string) flashorder.Status {
	t.Helper()
	o, err := c.Order(context.Background(), id)
	if err != nil {
		t.Fatalf("get order %s: %v", id, err)
	}
	return o.Status
}

func testPayCancel(t *testing.T, c *orderhttp.Client) {
	ctx := context.Background()
	putProduct(t, c, "life-1", 5, 1)
	o := create(t, c, "lu-1", "life-1", 1)
	paid, err := c.PayOrder(ctx, o.ID)
	if err != nil || paid.Status != flashorder.StatusPaid || paid.ID != o.ID || paid.TotalCents != o.TotalCents || len(paid.Items) != 1 {
		t.Fatalf("pay: %+v, %v", paid, err)
	}
	for name, call := range map[string]func(context.Context, string) (*flashorder.Order, error){"pay again": c.PayOrder, "cancel paid": c.CancelOrder} {
		if _, err := call(ctx, o.ID); errCode(t, err) != flashorder.EINVALIDSTATE {
			t.Fatalf("%s: %v, want invalid_state", name, err)
		}
	}
	if p := getProduct(t, c, "life-1"); p.Stock != 4 || p.Sold != 1 {
		t.Fatalf("after a payment: stock %d sold %d", p.Stock, p.Sold)
	}

	o2 := create(t, c, "lu-2", "life-1", 1)
	cancelled, err := c.CancelOrder(ctx, o2.ID)
	if err != nil || cancelled.Status != flashorder.StatusCancelled {
		t.Fatalf("cancel: %+v, %v", cancelled, err)
	}
	if p := getProduct(t, c, "life-1"); p.Stock != 4 || p.Sold != 1 {
		t.Fatalf("a cancel did not return stock: stock %d sold %d", p.Stock, p.Sold)
	}
	if _, err := c.PayOrder(ctx, o2.ID); errCode(t, err) != flashorder.EINVALIDSTATE {
		t.Fatalf("pay a cancelled order: %v, want invalid_state", err)
	}
	// The per-user limit is back: the same user buys again.
	create(t, c, "lu-2", "life-1", 1)
	if _, err := c.CreateOrder(ctx, order("lu-2", item("life-1", 1)), ""); errCode(t, err) != flashorder.ELIMITEXCEEDED {
		t.Fatalf("over the limit after a cancel and a reorder: %v", err)
	}

	for _, path := range []string{"/pay", "/cancel"} {
		if status, code := rawRequest(t, "POST", c.BaseURL+"/api/v1/orders/01900000-0000-7000-8000-000000000000"+path, nil, ""); status != 404 || code != flashorder.ENOTFOUND {
			t.Fatalf("%s of an unknown order: %d %s", path, status, code)
		}
		if status, code := rawRequest(t, "GET", c.BaseURL+"/api/v1/orders/"+o.ID+path, nil, ""); status != 405 || code != flashorder.EMETHODNOTALLOWED {
			t.Fatalf("GET %s: %d %s", path, status, code)
		}
	}
	assertAudit(t, c)
}

// testPayCancelRace sends 100 concurrent pays and cancels for one order:
// exactly one wins, the 99 others get 409 invalid_state.
func testPayCancelRace(t *testing.T, c *orderhttp.Client) {
	putProduct(t, c, "race-1", 3, 0)
	for round := range 3 {
		o := create(t, c, fmt.Sprintf("ru-%d", round), "race-1", 1)
		var mu sync.Mutex
		wins := map[flashorder.Status]int{}
		codes := map[string]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				call := c.PayOrder
				if i%2 == 1 {
					call = c.CancelOrder
				}
				got, err := call(context.Background(), o.ID)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					wins[got.Status]++
				} else {
					codes[errCode(t, err)]++
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(wins) != 1 || wins[flashorder.StatusPaid]+wins[flashorder.StatusCancelled] != 1 || codes[flashorder.EINVALIDSTATE] != 99 || len(codes) != 1 {
			t.Fatalf("round %d: wins %v, errors %v: want one winner and 99 invalid_state", round, wins, codes)
		}
		if _, won := wins[statusOf(t, c, o.ID)]; !won {
			t.Fatalf("round %d: order is %s, winners %v", round, statusOf(t, c, o.ID), wins)
		}
	}
	assertAudit(t, c)
}

// webhook posts body to the payment webhook with the given signature header
// ("" for none) and returns the status and error code.
func webhook(t *testing.T, c *orderhttp.Client, body, signature string) (int, string) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	if signature != "" {
		h[orderhttp.SignatureHeader] = signature
	}
	return rawRequest(t, "POST", c.BaseURL+"/api/v1/payments/webhook", h, body)
}

func sign(body string) string {
	return "sha256=" + hex.EncodeToString(orderhttp.SignBody([]byte(body), webhookSecret))
}

func testWebhook(t *testing.T, c *orderhttp.Client) {
	ctx := context.Background()
	putProduct(t, c, "hook-1", 5, 0)
	o := create(t, c, "hu-1", "hook-1", 1)
	body := `{"order_id":"` + o.ID + `","event":"paid"}`
	for name, sig := range map[string]string{
		"no signature":    "",
		"wrong secret":    "sha256=" + hex.EncodeToString(orderhttp.SignBody([]byte(body), "other")),
		"other body":      sign(body + " "),
		"not hex":         "sha256=zz",
		"no scheme":       hex.EncodeToString(orderhttp.SignBody([]byte(body), webhookSecret)),
		"truncated":       sign(body)[:20],
		"empty signature": "sha256=",
	} {
		if status, code := webhook(t, c, body, sig); status != 401 || code != flashorder.EUNAUTHORIZED {
			t.Fatalf("%s: %d %s, want 401 unauthorized", name, status, code)
		}
	}
	if s := statusOf(t, c, o.ID); s != flashorder.StatusCreated {
		t.Fatalf("a refused webhook changed the order: %s", s)
	}
	// Delivered, then replayed: both 200, one payment.
	for i := range 2 {
		if status, code := webhook(t, c, body, sign(body)); status != 200 {
			t.Fatalf("delivery %d: %d %s", i, status, code)
		}
	}
	if s := statusOf(t, c, o.ID); s != flashorder.StatusPaid {
		t.Fatalf("after the webhook the order is %s", s)
	}
	cancelled := create(t, c, "hu-2", "hook-1", 1)
	if _, err := c.CancelOrder(ctx, cancelled.ID); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		body   string
		status int
		code   string
	}{
		"cancelled order": {`{"order_id":"` + cancelled.ID + `","event":"paid"}`, 409, flashorder.EINVALIDSTATE},
		"unknown order":   {`{"order_id":"01900000-0000-7000-8000-000000000000","event":"paid"}`, 404, flashorder.ENOTFOUND},
		"unknown event":   {`{"order_id":"` + o.ID + `","event":"refunded"}`, 400, flashorder.EINVALID},
		"unknown field":   {`{"order_id":"` + o.ID + `","event":"paid","x":1}`, 400, flashorder.EINVALID},
		"no order id":     {`{"event":"paid"}`, 400, flashorder.EINVALID},
		"malformed":       {`{"order_id":`, 400, flashorder.EINVALID},
	} {
		if status, code := webhook(t, c, tc.body, sign(tc.body)); status != tc.status || code != tc.code {
			t.Fatalf("%s: %d %s, want %d %s", name, status, code, tc.status, tc.code)
		}
	}
	if p := getProduct(t, c, "hook-1"); p.Stock != 4 || p.Sold != 1 {
		t.Fatalf("stock %d sold %d, want 4 and 1", p.Stock, p.Sold)
	}
}

// testExpiryReturnsStock lets an unpaid order expire: its stock sells again
// and its user's per-user limit is free again; a late payment is refused.
func testExpiryReturnsStock(t *testing.T, ca, cb *orderhttp.Client) {
	ctx := context.Background()
	putProduct(t, ca, "exp-1", 1, 1)
	first := create(t, ca, "eu-1", "exp-1", 1)
	if _, err := cb.CreateOrder(ctx, order("eu-2", item("exp-1", 1)), ""); errCode(t, err) != flashorder.ESOLDOUT {
		t.Fatalf("second buyer before expiry: %v, want sold_out", err)
	}
	testenv.WaitFor(t, "the unpaid order to expire", 15*time.Second, func() bool { return statusOf(t, ca, first.ID) == flashorder.StatusExpired })
	if _, err := cb.PayOrder(ctx, first.ID); errCode(t, err) != flashorder.EINVALIDSTATE {
		t.Fatalf("late payment: %v, want invalid_state", err)
	}
	if _, err := cb.CancelOrder(ctx, first.ID); errCode(t, err) != flashorder.EINVALIDSTATE {
		t.Fatalf("cancel an expired order: %v, want invalid_state", err)
	}
	// The same user buys again (quota returned), pays in time, and the paid
	// order outlives the payment window. cb learnt the sell-out above: stock
	// that an expiry returns sells again there within --sold-out-ttl (1s).
	var second *flashorder.Order
	testenv.WaitFor(t, "the expired unit on sale again through cb", 5*time.Second, func() bool {
		res, err := cb.CreateOrder(ctx, order("eu-1", item("exp-1", 1)), "")
		if err != nil {
			if code := errCode(t, err); code != flashorder.ESOLDOUT && code != flashorder.ELIMITEXCEEDED {
				t.Fatalf("buy the expired unit again: %v", err)
			}
			return false
		}
		second = res.Order
		return true
	})
	if _, err := ca.PayOrder(ctx, second.ID); err != nil {
		t.Fatalf("pay in time: %v", err)
	}
	if _, err := cb.CreateOrder(ctx, order("eu-2", item("exp-1", 1)), ""); errCode(t, err) != flashorder.ESOLDOUT {
		t.Fatalf("after the resale: %v, want sold_out", err)
	}
	time.Sleep(1300 * time.Millisecond)
	if s := statusOf(t, ca, second.ID); s != flashorder.StatusPaid {
		t.Fatalf("a paid order became %s", s)
	}
	if l := auditLine(t, ca, "exp-1"); l.Restocked != 1 || l.Available != 0 || l.Sold != 1 {
		t.Fatalf("audit %+v", l)
	}
}

// testOneSweeper checks that only the leader expires orders, each once, and
// that when the leader goes away the other instance sweeps.
func testOneSweeper(t *testing.T, a, b *Main, ca, cb *orderhttp.Client) {
	putProduct(t, ca, "two-1", 1000, 0)
	wait := func(orders []*flashorder.Order) {
		t.Helper()
		testenv.WaitFor(t, "every order to expire", 15*time.Second, func() bool {
			for _, o := range orders {
				if statusOf(t, cb, o.ID) != flashorder.StatusExpired {
					return false
				}
			}
			return true
		})
	}
	if metric(t, cb, "flashorder_sweeper_leader") != 0 {
		t.Fatal("both instances lead")
	}
	aBefore, bBefore := metric(t, ca, "flashorder_orders_expired_total"), metric(t, cb, "flashorder_orders_expired_total")
	var orders []*flashorder.Order
	for i := range 20 {
		c := ca
		if i%2 == 1 {
			c = cb
		}
		orders = append(orders, create(t, c, fmt.Sprintf("tu-%d", i), "two-1", 1))
	}
	wait(orders)
	if da, db := metric(t, ca, "flashorder_orders_expired_total")-aBefore, metric(t, cb, "flashorder_orders_expired_total")-bBefore; da != 20 || db != 0 {
		t.Fatalf("expired by the leader %v, by the follower %v: want 20 and 0", da, db)
	}
	if l := auditLine(t, cb, "two-1"); l.Available != 1000 || l.Sold != 0 {
		t.Fatalf("audit after expiry: %+v", l)
	}

	// The leader goes away; the other instance takes over.
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "instance b to lead", 15*time.Second, func() bool { return metric(t, cb, "flashorder_sweeper_leader") == 1 })
	bBefore = metric(t, cb, "flashorder_orders_expired_total")
	orders = orders[:0]
	for i := range 10 {
		orders = append(orders, create(t, cb, fmt.Sprintf("tv-%d", i), "two-1", 2))
	}
	wait(orders)
	if d := metric(t, cb, "flashorder_orders_expired_total") - bBefore; d != 10 {
		t.Fatalf("the new leader expired %v orders, want 10", d)
	}
	if l := auditLine(t, cb, "two-1"); l.Available != 1000 || l.Sold != 0 || l.Restocked != 1000 {
		t.Fatalf("audit after takeover: %+v", l)
	}
	_ = b
}

// TestOrderdCloseStopsSweeper checks that Close stops the sweeper and every
// goroutine orderd started.
func TestOrderdCloseStopsSweeper(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	m := newTestMain(t)
	args := []string{"--listen", "127.0.0.1:0", "--db", testenv.SQLiteURL(t), "--admin-token", adminToken, "--sweep-interval", "10ms"}
	if err := m.ParseFlags(args, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := orderhttp.NewClient(m.URL(), adminToken)
	c.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	testenv.WaitFor(t, "the sweeper to lead", 15*time.Second, func() bool { return metric(t, c, "flashorder_sweeper_leader") == 1 })
	if _, err := c.PayOrder(context.Background(), "no-such"); errCode(t, err) != flashorder.ENOTFOUND {
		t.Fatalf("pay unknown order: %v", err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, ignore)
}

func TestLifecycleFlags(t *testing.T) {
	m := NewMain(io.Discard)
	if err := m.ParseFlags(nil, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if c := m.Config; c.PaymentTimeout != 15*time.Minute || c.SweepInterval != 10*time.Second || c.SweepBatch != 100 || c.PaymentWebhookSecret != "" {
		t.Fatalf("defaults %+v", c)
	}
	env := map[string]string{
		"ORDERD_PAYMENT_TIMEOUT":        "2m",
		"ORDERD_SWEEP_INTERVAL":         "250ms",
		"ORDERD_SWEEP_BATCH":            "9",
		"ORDERD_PAYMENT_WEBHOOK_SECRET": "from-env",
	}
	m = NewMain(io.Discard)
	if err := m.ParseFlags([]string{"--sweep-batch", "11"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c := m.Config; c.PaymentTimeout != 2*time.Minute || c.SweepInterval != 250*time.Millisecond || c.SweepBatch != 11 || c.PaymentWebhookSecret != "from-env" {
		t.Fatalf("from env and flags: %+v", c)
	}
	for _, bad := range [][]string{{"--sweep-batch", "0"}, {"--payment-timeout", "0s"}, {"--sweep-interval", "-1s"}} {
		m := newTestMain(t)
		args := append([]string{"--listen", "127.0.0.1:0", "--db", testenv.SQLiteURL(t), "--admin-token", adminToken}, bad...)
		if err := startErr(context.Background(), m, args...); err == nil || !strings.Contains(err.Error(), "must be positive") {
			t.Fatalf("%v: gave %v, want a refusal", bad, err)
		}
	}
}
