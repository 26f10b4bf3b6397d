package relay_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/relay"
)

// TestWebhookEndpointFaults runs the relay against an endpoint that fails
// three orders' events in three ways: order A's answered 500, order B's
// not answered at its first attempt (it times out) and 503 after, order
// C's answered 2xx, slowly.
// The windows are forced: A's third attempt and C's answer are held by the
// endpoint until every event of the other orders was delivered, so a relay
// that let the others wait behind a failing or slow event (one at a time, or
// blocking on a failure) never gets there. Then A and B are dead letters
// after MaxAttempts, with backoff between the attempts; C was delivered,
// late; replayed once the endpoint is healed, A and B are delivered too, and
// the feed is complete, in per-order order.
func TestWebhookEndpointFaults(t *testing.T) {
	db, orders := outboxWithOrders(t, testenv.SQLiteURL(t), 45) // 60 events
	a, b, c := orders[1].ID, orders[2].ID, orders[4].ID         // not cancelled: one event each
	pending, err := db.PendingEvents(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	orderOf := map[string]string{}
	for _, e := range pending {
		orderOf[e.ID] = e.OrderID
	}
	const others = 60 - 3
	const maxAttempts, minBackoff, timeout = 4, 200 * time.Millisecond, 3 * time.Second
	// transitSlack bounds how long a request takes from the client to the
	// endpoint's handler on loopback, even on a loaded machine (one run
	// measured the timed-out attempt's gap 0.3 ms short of timeout plus
	// backoff): far below the backoff checked.
	const transitSlack = 50 * time.Millisecond

	var mu sync.Mutex
	attemptsAt := map[string][]time.Time{} // A's and B's attempts
	var healed atomic.Bool
	rc := newReceiver(t, func(id string, n int) int {
		switch o := orderOf[id]; {
		case healed.Load():
			return http.StatusNoContent
		case o == a:
			return http.StatusInternalServerError
		case o == b:
			return http.StatusServiceUnavailable // after the client gave up
		}
		return http.StatusNoContent
	})
	othersDone := func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		n := 0
		for id := range rc.kept {
			if o := orderOf[id]; o != a && o != b && o != c {
				n++
			}
		}
		return n == others
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get(relay.HeaderID)
		mu.Lock()
		o, h := orderOf[id], healed.Load()
		if o == a || o == b {
			attemptsAt[o] = append(attemptsAt[o], time.Now())
		}
		n := len(attemptsAt[o])
		mu.Unlock()
		switch {
		case h:
		case o == a && n == 3:
			// The forced window: A's third attempt stays in flight until
			// the other orders' events were all delivered.
			deadline := time.Now().Add(10 * time.Second)
			for !othersDone() {
				if time.Now().After(deadline) {
					t.Errorf("the other orders' events were not delivered while order A's attempt was in flight")
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		case o == b && n == 1:
			// No answer: the client times out. (The body read, the server
			// notices the client hang up.)
			_, _ = io.Copy(io.Discard, req.Body)
			select {
			case <-req.Context().Done():
			case <-time.After(10 * time.Second):
				t.Errorf("order B's first attempt: the client did not give up")
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case o == c:
			// Slow, and forced: the answer waits until the other orders'
			// events were delivered meanwhile, before the client gives up
			// on it, which needs concurrent deliveries. (The body read, the
			// server notices the client hang up.)
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			for !othersDone() {
				if req.Context().Err() != nil {
					t.Errorf("the other orders' events were not delivered while order C's slow answer was in flight (%s)", timeout)
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		rc.serve(w, req)
	}))
	t.Cleanup(srv.Close)
	sink := webhook(t, srv.URL)
	sink.Timeout = timeout
	opts := fastOptions()
	opts.MaxAttempts, opts.MinBackoff, opts.MaxBackoff = maxAttempts, minBackoff, 4*minBackoff
	var dead int
	opts.OnDead = func() { mu.Lock(); dead++; mu.Unlock() }
	start := time.Now()
	startRelay(t, db, sink, newLocker(t), opts)

	waitSettled(t, db)
	t.Logf("settled in %s", time.Since(start).Round(time.Millisecond))
	page, err := db.Events(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var deadIDs []string
	for _, e := range page.Events {
		switch e.OrderID {
		case a, b:
			if e.State != flashorder.EventDead || e.Attempts != maxAttempts {
				t.Errorf("order %s's event: %s after %d attempts, want dead after %d", e.OrderID, e.State, e.Attempts, maxAttempts)
			}
			deadIDs = append(deadIDs, e.ID)
		default:
			if e.State != flashorder.EventSent {
				t.Errorf("order %s's event: %s, want sent", e.OrderID, e.State)
			}
		}
	}
	mu.Lock()
	for _, o := range []string{a, b} {
		at := attemptsAt[o]
		if len(at) != maxAttempts {
			t.Errorf("order %s: %d attempts reached the endpoint, want %d", o, len(at), maxAttempts)
			continue
		}
		// Backoff: MinBackoff doubled per attempt, jittered in its upper
		// half, counted from the end of the failed attempt.
		for i := 1; i < len(at); i++ {
			want := minBackoff << (i - 1) / 2
			if o == b && i == 1 {
				// The first attempt timed out: its timeout ran from
				// when the client sent it, a moment before it reached
				// the endpoint (where at[0] was taken).
				want += timeout - transitSlack
			}
			if gap := at[i].Sub(at[i-1]); gap < want {
				t.Errorf("order %s: attempt %d %s after the one before, want at least %s of backoff", o, i+1, gap, want)
			}
		}
	}
	if dead != 2 {
		t.Errorf("%d dead letters counted, want 2", dead)
	}
	mu.Unlock()
	healed.Store(true)
	rc.mu.Lock()
	if !rc.kept[firstEventOf(t, page.Events, c)] {
		t.Errorf("order C's event (slow answers) not delivered")
	}
	rc.mu.Unlock()

	// Replay: the endpoint healed, the dead letters go out.
	for _, id := range deadIDs {
		if err := db.ReplayEvent(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	waitSettled(t, db)
	checkFeed(t, db, 60, nil)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.kept) != 60 {
		t.Errorf("the endpoint kept %d events, want 60", len(rc.kept))
	}
}

func firstEventOf(t *testing.T, evs []*flashorder.Event, order string) string {
	t.Helper()
	for _, e := range evs {
		if e.OrderID == order {
			return e.ID
		}
	}
	t.Fatalf("no event of order %s", order)
	return ""
}
