package relay_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/relay"
)

var (
	_ relay.BatchPublisher      = batchSink{}
	_ relay.ConcurrentPublisher = concurrentSink{}
)

// strictSink stands for a downstream that checks the relay's promise as it
// receives: an order's event may arrive only once the one before it (its
// sequence - 1) was acknowledged, never while another event of the same
// order is in flight, and no acknowledged event is offered again. fail
// decides, by event and attempt (from 1), which attempts fail.
type strictSink struct {
	t     *testing.T
	fail  func(e *flashorder.Event, attempt int, index int) bool
	delay time.Duration // at most, random, per publish (concurrent sink)

	mu        sync.Mutex
	attempts  map[string]int   // by event id
	acked     map[string]int64 // order -> highest sequence acknowledged
	inFlight  map[string]bool  // orders with an event in flight
	calls     int              // publish calls (a batch is one)
	sameOrder int              // batches holding two events of one order
	maxBatch  int
}

func newStrictSink(t *testing.T, fail func(e *flashorder.Event, attempt, index int) bool) *strictSink {
	return &strictSink{t: t, fail: fail, attempts: map[string]int{}, acked: map[string]int64{}, inFlight: map[string]bool{}}
}

func (s *strictSink) begin(e *flashorder.Event, index int) (attempt int, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[e.OrderID] {
		s.t.Errorf("order %s: event %d offered while another of the order is in flight", e.OrderID, e.Sequence)
	}
	s.inFlight[e.OrderID] = true
	if got := s.acked[e.OrderID]; got >= e.Sequence {
		s.t.Errorf("order %s: event %d offered again after it was acknowledged", e.OrderID, e.Sequence)
	} else if got != e.Sequence-1 {
		s.t.Errorf("order %s: event %d offered before event %d was acknowledged (reordered or skipped)", e.OrderID, e.Sequence, e.Sequence-1)
	}
	s.attempts[e.ID]++
	return s.attempts[e.ID], s.fail != nil && s.fail(e, s.attempts[e.ID], index)
}

func (s *strictSink) end(e *flashorder.Event, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight[e.OrderID] = false
	if ok {
		s.acked[e.OrderID] = max(s.acked[e.OrderID], e.Sequence)
	}
}

var errRefused = errors.New("strict sink: refused")

func (s *strictSink) Publish(ctx context.Context, e *flashorder.Event, body []byte) error {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	_, fail := s.begin(e, 0)
	if s.delay > 0 {
		time.Sleep(rand.N(s.delay))
	}
	s.end(e, !fail)
	if fail {
		return errRefused
	}
	return nil
}

// batchSink is a strictSink that takes batches (relay.BatchPublisher).
type batchSink struct{ *strictSink }

func (b batchSink) PublishBatch(ctx context.Context, evs []*flashorder.Event, bodies [][]byte) []error {
	b.mu.Lock()
	b.calls++
	b.maxBatch = max(b.maxBatch, len(evs))
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.OrderID] {
			b.sameOrder++
		}
		seen[e.OrderID] = true
	}
	b.mu.Unlock()
	errs := make([]error, len(evs))
	fails := make([]bool, len(evs))
	for i, e := range evs { // all sent first, as JetStream's async publish
		_, fails[i] = b.begin(e, i)
	}
	for i, e := range evs {
		b.end(e, !fails[i])
		if fails[i] {
			errs[i] = errRefused
		}
	}
	return errs
}

// concurrentSink is a strictSink the relay may call from several goroutines.
type concurrentSink struct{ *strictSink }

func (c concurrentSink) MaxInFlight() int { return 8 }

// checkFeed checks the admin feed: every event settled as dead says (sent
// unless listed), cursors increasing (consecutive but for replays, which
// take new ones), each order's events in sequence, n events in all.
func checkFeed(t *testing.T, db interface {
	Events(context.Context, int64, int) (*flashorder.EventPage, error)
}, n int, dead map[string]bool) {
	t.Helper()
	page, err := db.Events(context.Background(), 0, 10*n)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != n {
		t.Errorf("the feed holds %d events, want %d", len(page.Events), n)
	}
	last := map[string]int64{}
	var cursor int64
	for i, e := range page.Events {
		if e.Cursor <= cursor {
			t.Errorf("feed event %d: cursor %d after %d", i+1, e.Cursor, cursor)
		}
		cursor = e.Cursor
		want := flashorder.EventSent
		if dead[e.ID] {
			want = flashorder.EventDead
		}
		if e.State != want {
			t.Errorf("event %s (order %s, %d): %s, want %s", e.ID, e.OrderID, e.Sequence, e.State, want)
		}
		if last[e.OrderID] != e.Sequence-1 {
			t.Errorf("order %s: event %d settled after event %d (feed out of per-order order)", e.OrderID, e.Sequence, last[e.OrderID])
		}
		last[e.OrderID] = e.Sequence
	}
}

// TestRelayBatchKeepsOrderOnFailure publishes through a batch sink that
// fails, in every batch, the event at index 1 at its first attempt, and the
// first event of order 0 (whose cancel is in the same read) three times: the
// failed event and its order's later event are not settled, the later event
// is offered only after the failed one was acknowledged; the events of
// other orders settle meanwhile; nothing is skipped. The backlog of the
// first read grows the batches past Batch, never past MaxBatch. On every
// engine: PostgreSQL reads and settles in its own statements.
func TestRelayBatchKeepsOrderOnFailure(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) { testRelayBatchKeepsOrderOnFailure(t, d.URL) })
	}
}

func testRelayBatchKeepsOrderOnFailure(t *testing.T, url string) {
	db, orders := outboxWithOrders(t, url, 60) // 80 events
	first := orders[0].ID
	sink := batchSink{newStrictSink(t, func(e *flashorder.Event, attempt, index int) bool {
		if e.OrderID == first && e.Sequence == 1 {
			return attempt <= 3
		}
		return index == 1 && attempt == 1
	})}
	var failures atomic.Int64
	opts := fastOptions()
	opts.Batch, opts.MaxBatch = 20, 40
	opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 40*time.Millisecond
	opts.OnFailure = func() { failures.Add(1) }
	startRelay(t, db, sink, newLocker(t), opts)
	waitSettled(t, db)
	checkFeed(t, db, 80, nil)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.sameOrder != 0 {
		t.Errorf("%d batches held two events of one order", sink.sameOrder)
	}
	if sink.maxBatch <= opts.Batch || sink.maxBatch > opts.MaxBatch {
		t.Errorf("largest batch %d events, want more than Batch %d (a backlog) and at most MaxBatch %d", sink.maxBatch, opts.Batch, opts.MaxBatch)
	}
	for i, o := range orders {
		want := int64(1)
		if i%3 == 0 { // cancelled
			want = 2
		}
		if sink.acked[o.ID] < want {
			t.Errorf("order %s: acknowledged up to %d, want %d", o.ID, sink.acked[o.ID], want)
		}
	}
	if failures.Load() < 4 {
		t.Errorf("%d failed attempts, want at least 4", failures.Load())
	}
	// The events of other orders did not wait for order 0's: its creation
	// settled (after 4 attempts and 3 backoffs) later than events of
	// orders placed after it.
	page, _ := db.Events(context.Background(), 0, 200)
	if page.Events[0].OrderID == first {
		t.Errorf("order 0's event, failing 3 times, settled first: the relay waited for it")
	}
}

// TestRelayConcurrentKeepsOrder delivers through a sink that takes 8
// events at once with random latency and fails a third of the first two
// attempts at random: no order ever has two events in flight, none is
// offered before the one before it was acknowledged, and every event
// settles once, in per-order order in the feed.
func TestRelayConcurrentKeepsOrder(t *testing.T) {
	db, _ := outboxWithOrders(t, testenv.SQLiteURL(t), 90) // 120 events
	sink := concurrentSink{newStrictSink(t, func(_ *flashorder.Event, attempt, _ int) bool { return attempt < 3 && rand.N(3) == 0 })}
	sink.delay = 3 * time.Millisecond
	var dead atomic.Int64
	opts := fastOptions()
	opts.MaxAttempts = 3
	opts.OnDead = func() { dead.Add(1) }
	startRelay(t, db, sink, newLocker(t), opts)
	waitSettled(t, db)
	page, err := db.Events(context.Background(), 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	deadIDs := map[string]bool{}
	for _, e := range page.Events {
		if e.State == flashorder.EventDead {
			deadIDs[e.ID] = true
		}
	}
	if int64(len(deadIDs)) != dead.Load() {
		t.Errorf("%d dead in the feed, %d counted", len(deadIDs), dead.Load())
	}
	if len(deadIDs) != 0 {
		t.Errorf("%d dead letters, want none (the third attempt succeeds)", len(deadIDs))
	}
	checkFeed(t, db, 120, nil)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.calls <= 120 {
		t.Errorf("%d publishes for 120 events: none failed?", sink.calls)
	}
}

// TestRelaySinkDown fails every publish for a while: the relay backs off at
// most Batch events at once (it takes the sink as down and offers nothing
// new), and once the sink is back, every event goes out, in per-order order.
func TestRelaySinkDown(t *testing.T) {
	db, _ := outboxWithOrders(t, testenv.SQLiteURL(t), 90) // 120 events
	var down atomic.Bool
	down.Store(true)
	sink := concurrentSink{newStrictSink(t, func(*flashorder.Event, int, int) bool { return down.Load() })}
	opts := fastOptions()
	opts.Batch, opts.MaxAttempts = 20, 1000
	opts.MinBackoff, opts.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	startRelay(t, db, sink, newLocker(t), opts)
	testenv.WaitFor(t, "300 failed attempts", 30*time.Second, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		n := 0
		for _, a := range sink.attempts {
			n += a
		}
		return n >= 300
	})
	sink.mu.Lock()
	tried := len(sink.attempts)
	sink.mu.Unlock()
	// Batch backing off, and up to MaxInFlight (8) more offered while the
	// last of them failed.
	if tried > 20+8 {
		t.Errorf("with the sink down the relay tried %d distinct events, want at most %d", tried, 20+8)
	}
	down.Store(false)
	waitSettled(t, db)
	checkFeed(t, db, 120, nil)
}
