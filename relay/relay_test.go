package relay_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/relay"
)

// testSecret is a Standard Webhooks secret for the tests.
var testSecret = relay.SecretPrefix + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// receiver is a webhook endpoint as a consumer writes one: it verifies every
// delivery's signature and keeps each event once, by id.
type receiver struct {
	t *testing.T
	// answer, when set, decides the status of a delivery of id, the n-th
	// of that id (from 1); nil answers 204.
	answer func(id string, n int) int

	mu         sync.Mutex
	deliveries map[string]int       // deliveries by event id
	events     []map[string]any     // the CloudEvents, first delivery of each id
	byOrder    map[string][]float64 // orderseq of each order's events, in arrival order
	kept       map[string]bool      // ids kept (answered 2xx)
	srv        *httptest.Server
}

func newReceiver(t *testing.T, answer func(id string, n int) int) *receiver {
	r := &receiver{t: t, answer: answer, deliveries: map[string]int{}, byOrder: map[string][]float64{}, kept: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, err := relay.Verify(testSecret, req.Header, body, time.Now(), 5*time.Minute)
	if err != nil {
		r.t.Errorf("delivery with a bad signature: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/cloudevents+json" {
		r.t.Errorf("Content-Type %q", ct)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deliveries[id]++
	status := http.StatusNoContent
	if r.answer != nil {
		status = r.answer(id, r.deliveries[id])
	}
	if status/100 == 2 && !r.kept[id] {
		var ce map[string]any
		if err := json.Unmarshal(body, &ce); err != nil {
			r.t.Errorf("body is not JSON: %v", err)
		}
		if ce["id"] != id {
			r.t.Errorf("webhook-id %s, CloudEvent id %v", id, ce["id"])
		}
		r.kept[id] = true
		r.events = append(r.events, ce)
		order := ce["subject"].(string)
		r.byOrder[order] = append(r.byOrder[order], ce["orderseq"].(float64))
	}
	w.WriteHeader(status)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// outboxWithOrders returns a store with events on, n orders placed and every
// third of them cancelled: n + n/3 events.
func outboxWithOrders(t *testing.T, url string, n int) (*gormdb.DB, []*flashorder.Order) {
	t.Helper()
	ctx := context.Background()
	db, err := gormdb.Open(ctx, url, gormdb.Options{Events: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "p", Name: "p", PriceCents: 100, Stock: 1000}); err != nil {
		t.Fatal(err)
	}
	row, lc := checkout.NewRow(db), checkout.NewLifecycle(db)
	var orders []*flashorder.Order
	for i := range n {
		req := flashorder.OrderRequest{UserID: fmt.Sprintf("u%d", i), Items: []flashorder.ItemRequest{{SKU: "p", Quantity: 1}}}
		o, err := row.PlaceOrder(ctx, &flashorder.PlaceOrderRequest{OrderRequest: req})
		if err != nil {
			t.Fatal(err)
		}
		orders = append(orders, o)
	}
	for i := 0; i < n; i += 3 {
		if _, err := lc.CancelOrder(ctx, orders[i].ID); err != nil {
			t.Fatal(err)
		}
	}
	return db, orders
}

// fastOptions are relay options for tests: short waits, no logs.
func fastOptions() relay.Options {
	return relay.Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Poll: 5 * time.Millisecond, Batch: 7,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// newLocker returns an in-process locker, closed when the test ends, after
// the relays (cleanups run last registered first).
func newLocker(t *testing.T) *inmem.Locker {
	l := inmem.NewLocker()
	t.Cleanup(func() { l.Close() })
	return l
}

// waitSettled waits until the outbox has no pending event.
func waitSettled(t *testing.T, db *gormdb.DB) {
	t.Helper()
	testenv.WaitFor(t, "no event pending", 30*time.Second, func() bool {
		rows, _, err := db.Backlog(context.Background())
		return err == nil && rows == 0
	})
}

func startRelay(t *testing.T, db *gormdb.DB, sink flashorder.EventPublisher, locker flashorder.Locker, opts relay.Options) *relay.Relay {
	t.Helper()
	r := relay.New(db, sink, locker, opts)
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

func webhook(t *testing.T, url string) *relay.Webhook {
	t.Helper()
	w, err := relay.NewWebhook(url, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// checkStream checks what the receiver kept: every event of the outbox
// exactly once, each order's in sequence from 1 without a gap; and that the
// admin feed pages through all of them, sent, with consecutive cursors.
func checkStream(t *testing.T, db *gormdb.DB, rc *receiver, orders []*flashorder.Order, wantEvents int) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.events) != wantEvents {
		t.Errorf("receiver kept %d events, want %d", len(rc.events), wantEvents)
	}
	for i, o := range orders {
		seqs := rc.byOrder[o.ID]
		want := 1
		if i%3 == 0 {
			want = 2
		}
		if len(seqs) != want {
			t.Errorf("order %s: %d events, want %d", o.ID, len(seqs), want)
			continue
		}
		for j, s := range seqs {
			if int(s) != j+1 {
				t.Errorf("order %s: sequences %v, want 1..%d in order", o.ID, seqs, want)
			}
		}
	}
	var after int64
	n := 0
	for {
		page, err := db.Events(context.Background(), after, 5)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			n++
			if e.Cursor != int64(n) || e.State != flashorder.EventSent {
				t.Errorf("feed event %d: cursor %d, state %s", n, e.Cursor, e.State)
			}
		}
		after = page.Next
		if !page.More {
			break
		}
	}
	if n != wantEvents {
		t.Errorf("the admin feed holds %d events, want %d", n, wantEvents)
	}
}

// TestRelayDelivers publishes an outbox to a webhook on every database:
// every event arrives signed, once after deduplication, in per-order order;
// the feed shows them all sent.
func TestRelayDelivers(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) {
			db, orders := outboxWithOrders(t, d.URL, 30)
			rc := newReceiver(t, nil)
			locker := newLocker(t)
			var published atomic.Int64
			opts := fastOptions()
			opts.OnPublished = func() { published.Add(1) }
			r := startRelay(t, db, webhook(t, rc.srv.URL), locker, opts)
			waitSettled(t, db)
			r.Stop()
			checkStream(t, db, rc, orders, 40)
			if published.Load() != 40 {
				t.Errorf("OnPublished called %d times, want 40", published.Load())
			}
			if rows, _, err := db.Backlog(context.Background()); err != nil || rows != 0 {
				t.Errorf("backlog %d (%v), want 0", rows, err)
			}
		})
	}
}

// TestRelayRetries answers 500 to every event's first delivery: each is
// retried and delivered at its second attempt, the failures counted.
func TestRelayRetries(t *testing.T) {
	db, orders := outboxWithOrders(t, testenv.SQLiteURL(t), 9)
	rc := newReceiver(t, func(id string, n int) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	locker := newLocker(t)
	var failures atomic.Int64
	opts := fastOptions()
	opts.OnFailure = func() { failures.Add(1) }
	r := startRelay(t, db, webhook(t, rc.srv.URL), locker, opts)
	waitSettled(t, db)
	r.Stop()
	checkStream(t, db, rc, orders, 12)
	if failures.Load() != 12 {
		t.Errorf("%d failures counted, want 12", failures.Load())
	}
	page, err := db.Events(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Events {
		if e.Attempts != 2 {
			t.Errorf("event %s: %d attempts, want 2", e.ID, e.Attempts)
		}
	}
}

// TestRelayDeadLetter refuses one event for good: after MaxAttempts it is a
// dead letter and the events after it are delivered; replayed once the
// endpoint takes it, it is delivered too.
func TestRelayDeadLetter(t *testing.T) {
	db, orders := outboxWithOrders(t, testenv.SQLiteURL(t), 6)
	pending, err := db.PendingEvents(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	poison := pending[0].ID
	var healed atomic.Bool
	rc := newReceiver(t, func(id string, n int) int {
		if id == poison && !healed.Load() {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	locker := newLocker(t)
	var dead atomic.Int64
	opts := fastOptions()
	opts.MaxAttempts = 3
	opts.OnDead = func() { dead.Add(1) }
	startRelay(t, db, webhook(t, rc.srv.URL), locker, opts)
	waitSettled(t, db)
	page, err := db.Events(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	// The poison event (order 0's creation) is dead after 3 attempts; the
	// other orders' events did not wait for it, order 0's cancel did.
	if len(page.Events) != 8 {
		t.Fatalf("feed: %d events, want 8", len(page.Events))
	}
	var poisonAt, cancelAt int
	for i, e := range page.Events {
		switch {
		case e.ID == poison:
			poisonAt = i
			if e.State != flashorder.EventDead || e.Attempts != 3 {
				t.Errorf("poison event: %s after %d attempts, want dead after 3", e.State, e.Attempts)
			}
		case e.State != flashorder.EventSent:
			t.Errorf("event %s: %s", e.ID, e.State)
		case e.OrderID == orders[0].ID:
			cancelAt = i
		}
	}
	if cancelAt < poisonAt {
		t.Errorf("order 0's cancel settled (at %d) before its creation died (at %d)", cancelAt, poisonAt)
	}
	rc.mu.Lock()
	if rc.deliveries[poison] != 3 {
		t.Errorf("the poison event was offered %d times, want 3", rc.deliveries[poison])
	}
	rc.mu.Unlock()
	if dead.Load() != 1 {
		t.Errorf("%d dead letters counted, want 1", dead.Load())
	}
	if err := db.ReplayEvent(context.Background(), page.Events[cancelAt].ID); flashorder.ErrorCode(err) != flashorder.EINVALIDSTATE {
		t.Errorf("replay of a sent event: %v, want invalid_state", err)
	}
	if err := db.ReplayEvent(context.Background(), "no-such-event"); flashorder.ErrorCode(err) != flashorder.ENOTFOUND {
		t.Errorf("replay of an unknown event: %v, want not_found", err)
	}
	healed.Store(true)
	if err := db.ReplayEvent(context.Background(), poison); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, db)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.byOrder[orders[0].ID]) != 2 {
		t.Errorf("order %s: events %v", orders[0].ID, rc.byOrder[orders[0].ID])
	}
}

// crashAfter is a sink that delivers through next, and after n deliveries
// delivers one more and then fails it as a crash would (the event published,
// not yet marked sent), ending its relay.
type crashAfter struct {
	next  flashorder.EventPublisher
	n     int
	stop  func()
	count int
}

func (c *crashAfter) Publish(ctx context.Context, e *flashorder.Event, body []byte) error {
	err := c.next.Publish(ctx, e, body)
	c.count++
	if err == nil && c.count == c.n+1 {
		go c.stop()
		<-ctx.Done()
		return errors.New("crashed after the publish")
	}
	return err
}

// TestRelayRestart stops the relay right after a publish that it did not
// mark sent, as a crash would, and starts another on the outbox: the rest
// is published without a skip, the unmarked event again, which the
// receiver drops by its id.
func TestRelayRestart(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) {
			db, orders := outboxWithOrders(t, d.URL, 15)
			rc := newReceiver(t, nil)
			locker := newLocker(t)
			crash := &crashAfter{next: webhook(t, rc.srv.URL), n: 8}
			first := relay.New(db, crash, locker, fastOptions())
			crash.stop = first.Stop
			first.Start()
			testenv.WaitFor(t, "9 events delivered", 30*time.Second, func() bool { return rc.count() == 9 })
			first.Stop()
			if page, err := db.Events(context.Background(), 0, 100); err != nil || len(page.Events) != 8 {
				t.Fatalf("after the crash %d events are marked sent (%v), want 8", len(page.Events), err)
			}
			startRelay(t, db, webhook(t, rc.srv.URL), locker, fastOptions())
			waitSettled(t, db)
			checkStream(t, db, rc, orders, 20)
			rc.mu.Lock()
			defer rc.mu.Unlock()
			twice := 0
			for _, n := range rc.deliveries {
				if n > 1 {
					twice++
				}
			}
			if twice != 1 {
				t.Errorf("%d events delivered twice, want 1 (the one published before the crash)", twice)
			}
		})
	}
}

// TestRelayOneLeader runs two relays that share a locker: one publishes, the
// other waits, and takes over when the first stops; no goroutine outlives
// them.
func TestRelayOneLeader(t *testing.T) {
	// Registered first, checked last: after the relays stopped and the
	// locker, receiver and database closed.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	db, _ := outboxWithOrders(t, testenv.SQLiteURL(t), 3)
	rc := newReceiver(t, nil)
	locker := newLocker(t)
	var leading [2]atomic.Int32
	var relays [2]*relay.Relay
	for i := range relays {
		opts := fastOptions()
		opts.OnLeader = func(on bool) {
			if on {
				leading[i].Add(1)
			} else {
				leading[i].Add(-1)
			}
		}
		relays[i] = startRelay(t, db, webhook(t, rc.srv.URL), locker, opts)
	}
	testenv.WaitFor(t, "4 events delivered", 30*time.Second, func() bool { return rc.count() == 4 })
	if n := leading[0].Load() + leading[1].Load(); n != 1 {
		t.Fatalf("%d relays lead, want 1", n)
	}
	leader := 0
	if leading[1].Load() == 1 {
		leader = 1
	}
	relays[leader].Stop()
	testenv.WaitFor(t, "the other relay leading", 10*time.Second, func() bool { return leading[1-leader].Load() == 1 })
}

// TestRelayRetention starts a relay with a retention shorter than the age of
// the events an earlier relay delivered: it deletes them, all but the
// newest, from which the cursors go on.
func TestRelayRetention(t *testing.T) {
	db, _ := outboxWithOrders(t, testenv.SQLiteURL(t), 3)
	rc := newReceiver(t, nil)
	locker := newLocker(t)
	first := startRelay(t, db, webhook(t, rc.srv.URL), locker, fastOptions())
	waitSettled(t, db)
	first.Stop()
	opts := fastOptions()
	opts.Retention = time.Nanosecond
	startRelay(t, db, webhook(t, rc.srv.URL), locker, opts)
	testenv.WaitFor(t, "all but the newest event deleted", 30*time.Second, func() bool {
		page, err := db.Events(context.Background(), 0, 10)
		return err == nil && len(page.Events) == 1 && page.Events[0].Cursor == 4
	})
}
