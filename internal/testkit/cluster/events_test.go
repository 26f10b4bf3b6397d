package cluster_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/cluster"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/loadtest"
	"github.com/flashorder/flashorder/relay"
)

// events runs the order events' fault scenarios (issue 23): orderd with
// --events pointing at a webhook receiver of the test's own, on loopback,
// that verifies every delivery's Standard Webhooks signature
// (relay.Verify) and can hold deliveries unanswered to force a window.
//
// Run them alone with -run 'TestFaults/events'; the Patroni one is
// TestPatroniFaults/events.
func (s *suite) events(t *testing.T) {
	t.Run("kill9", s.eventsKill9)
	t.Run("sigstop", s.eventsSigstop)
}

// eventReceiver is a webhook endpoint that records every delivery. While
// held (hold), deliveries wait unanswered until release or until their
// connection dies (the sending orderd was killed): so a test knows the relay
// has exactly those events in flight, read from the outbox and not yet
// published.
type eventReceiver struct {
	secret string
	srv    *httptest.Server

	mu       sync.Mutex
	gate     chan struct{} // non-nil while held
	held     int           // deliveries waiting at the gate now
	arrivals []arrival     // in the order the receiver processed them
	invalid  []string      // deliveries that failed verification
}

// arrival is one delivery the receiver processed.
type arrival struct {
	id, order, typ string
	seq            int64
	at             time.Time
	// held: it waited at the gate; answered: it was answered 2xx (else its
	// connection died while held: a consumer that works before answering
	// has seen it nonetheless).
	held, answered bool
}

func newEventReceiver(t *testing.T) *eventReceiver {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	rc := &eventReceiver{secret: relay.SecretPrefix + base64.StdEncoding.EncodeToString(key)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve)) // 127.0.0.1
	t.Cleanup(func() {
		rc.release()
		rc.srv.Close()
	})
	return rc
}

// args are the orderd flags that send events to the receiver.
func (rc *eventReceiver) args() []string {
	return []string{"--events", rc.srv.URL + "/flashorder", "--events-secret", rc.secret}
}

func (rc *eventReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	id, verr := relay.Verify(rc.secret, r.Header, body, time.Now(), 5*time.Minute)
	var ev struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Subject  string `json:"subject"`
		OrderSeq int64  `json:"orderseq"`
	}
	if err == nil && verr == nil {
		err = json.Unmarshal(body, &ev)
	}
	if err != nil || verr != nil || ev.ID != id {
		rc.mu.Lock()
		rc.invalid = append(rc.invalid, fmt.Sprintf("webhook-id %q: read %v, verify %v, body id %q", r.Header.Get(relay.HeaderID), err, verr, ev.ID))
		rc.mu.Unlock()
		http.Error(w, "invalid", http.StatusUnauthorized)
		return
	}
	a := arrival{id: id, order: ev.Subject, typ: ev.Type, seq: ev.OrderSeq}
	rc.mu.Lock()
	gate := rc.gate
	if gate != nil {
		rc.held++
		a.held = true
	}
	rc.mu.Unlock()
	if gate != nil {
		var dead bool
		select {
		case <-gate:
		case <-r.Context().Done():
			dead = true
		}
		rc.mu.Lock()
		rc.held--
		if dead {
			a.at = time.Now()
			rc.arrivals = append(rc.arrivals, a)
			rc.mu.Unlock()
			return
		}
		rc.mu.Unlock()
	}
	rc.mu.Lock()
	a.at, a.answered = time.Now(), true
	rc.arrivals = append(rc.arrivals, a)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// hold makes deliveries wait unanswered from now on.
func (rc *eventReceiver) hold() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.gate == nil {
		rc.gate = make(chan struct{})
	}
}

// release answers the held deliveries (2xx) and stops holding.
func (rc *eventReceiver) release() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.gate != nil {
		close(rc.gate)
		rc.gate = nil
	}
}

// waitHeld waits until at least n deliveries wait at the gate, and returns
// how many do.
func (rc *eventReceiver) waitHeld(ctx context.Context, n int) (int, error) {
	for {
		rc.mu.Lock()
		h := rc.held
		rc.mu.Unlock()
		if h >= n {
			return h, nil
		}
		select {
		case <-ctx.Done():
			return h, fmt.Errorf("%d deliveries held, want %d: %w", h, n, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// snapshot returns the arrivals so far.
func (rc *eventReceiver) snapshot() []arrival {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.arrivals)
}

// outboxRow is one row of the events table.
type outboxRow struct {
	id, order, typ, state string
	seq                   int64
}

// readOutbox reads every order id and every outbox row of the database.
func readOutbox(ctx context.Context, dbURL string) (orders map[string]bool, rows map[string]outboxRow, err error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close(context.Background())
	orders = map[string]bool{}
	r, err := conn.Query(ctx, "SELECT id FROM orders")
	if err != nil {
		return nil, nil, err
	}
	for r.Next() {
		var id string
		if err := r.Scan(&id); err != nil {
			return nil, nil, err
		}
		orders[id] = true
	}
	if err := r.Err(); err != nil {
		return nil, nil, err
	}
	rows = map[string]outboxRow{}
	r, err = conn.Query(ctx, "SELECT event_id, order_id, seq, event_type, state FROM events")
	if err != nil {
		return nil, nil, err
	}
	for r.Next() {
		var o outboxRow
		if err := r.Scan(&o.id, &o.order, &o.seq, &o.typ, &o.state); err != nil {
			return nil, nil, err
		}
		rows[o.id] = o
	}
	return orders, rows, r.Err()
}

// pendingEvents counts the outbox rows not yet delivered.
func pendingEvents(ctx context.Context, dbURL string) (int64, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int64
	err = conn.QueryRow(ctx, "SELECT count(*) FROM events WHERE state = 'pending'").Scan(&n)
	return n, err
}

// eventsResult is what checkEvents found.
type eventsResult struct {
	orders, rows, paid          int
	arrivals, distinct, repeats int
	unanswered                  int
	// reordered counts arrivals of an order's event after an arrival of a
	// later event of that order (what would break per-order order for a
	// consumer).
	reordered  int
	drained    time.Duration
	violations []string
}

// checkEvents waits until the outbox at dbURL has nothing pending and every
// row of it was answered by the receiver, then checks the events against the
// database: every order has its order.created delivered; every delivered
// event is an outbox row of an order the database has, with the row's order,
// type and sequence; each order's sequence has no gap; no event arrived after
// a later one of its order; and counts the repeats (by webhook-id).
func (rc *eventReceiver) checkEvents(ctx context.Context, dbURL string, wait time.Duration) *eventsResult {
	res := &eventsResult{}
	start := time.Now()
	deadline := start.Add(wait)
	var orders map[string]bool
	var rows map[string]outboxRow
	for {
		var err error
		orders, rows, err = readOutbox(ctx, dbURL)
		if err == nil {
			answered := map[string]bool{}
			for _, a := range rc.snapshot() {
				if a.answered {
					answered[a.id] = true
				}
			}
			done := true
			for id, r := range rows {
				if r.state == "pending" || !answered[id] {
					done = false
					break
				}
			}
			if done {
				break
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				res.violations = append(res.violations, fmt.Sprintf("read the outbox: %v", err))
				return res
			}
			res.violations = append(res.violations, fmt.Sprintf("the outbox was not delivered within %s", wait))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.drained = time.Since(start)
	arr := rc.snapshot()
	rc.mu.Lock()
	for _, v := range rc.invalid {
		res.violations = append(res.violations, "invalid delivery: "+v)
	}
	rc.mu.Unlock()
	res.orders, res.rows, res.arrivals = len(orders), len(rows), len(arr)

	bad := func(format string, args ...any) {
		if len(res.violations) < 50 {
			res.violations = append(res.violations, fmt.Sprintf(format, args...))
		}
	}
	seen := map[string]int{}
	answered := map[string]bool{}
	maxSeq := map[string]int64{} // per order, the highest sequence arrived so far
	for _, a := range arr {
		seen[a.id]++
		if a.answered {
			answered[a.id] = true
		} else {
			res.unanswered++
		}
		r, ok := rows[a.id]
		switch {
		case !ok:
			bad("delivered event %s (%s of order %s) is not in the outbox", a.id, a.typ, a.order)
		case r.order != a.order || r.seq != a.seq || r.typ != a.typ:
			bad("delivered event %s is %s #%d of order %s, the outbox has %s #%d of %s", a.id, a.typ, a.seq, a.order, r.typ, r.seq, r.order)
		}
		if !orders[a.order] {
			bad("delivered event %s (%s) is of order %s, which the database does not have", a.id, a.typ, a.order)
		}
		if a.seq < maxSeq[a.order] {
			res.reordered++
			bad("event %s #%d of order %s arrived after its #%d", a.id, a.seq, a.order, maxSeq[a.order])
		}
		maxSeq[a.order] = max(maxSeq[a.order], a.seq)
	}
	res.distinct = len(seen)
	res.repeats = res.arrivals - res.distinct

	perOrder := map[string][]int64{}
	for id, r := range rows {
		perOrder[r.order] = append(perOrder[r.order], r.seq)
		if r.state != "sent" {
			bad("outbox row %s (%s of %s) is %s", id, r.typ, r.order, r.state)
		}
		if !answered[id] {
			bad("outbox event %s (%s #%d of order %s) was never delivered", id, r.typ, r.seq, r.order)
		}
		if r.typ == "order.paid" {
			res.paid++
		}
	}
	for id := range orders {
		seqs := perOrder[id]
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		if len(seqs) == 0 {
			bad("order %s has no event", id)
			continue
		}
		for i, s := range seqs {
			if s != int64(i+1) {
				bad("order %s has events %v: not 1.. without gaps", id, seqs)
				break
			}
		}
	}
	for o := range perOrder {
		if !orders[o] {
			bad("the outbox has events of order %s, which the database does not have", o)
		}
	}
	return res
}

// report notes res on f and fails t on its violations.
func (res *eventsResult) report(t *testing.T, f *fault) {
	t.Helper()
	f.note("events: %d orders in the database, %d outbox rows (%d order.paid), all delivered (%s from the check's start, after the load and its audit); %d deliveries, %d distinct event ids, %d repeats by webhook-id (%d of them to connections that died unanswered), %d out of per-order order",
		res.orders, res.rows, res.paid, res.drained.Round(time.Millisecond), res.arrivals, res.distinct, res.repeats, res.unanswered, res.reordered)
	for _, v := range res.violations {
		t.Error(v)
	}
}

// eventsKill9: kill -9 orderd between the commit and the publish. The
// receiver holds every delivery unanswered; once the relay has all its
// deliveries in flight held (events committed and read from the outbox, not
// published), orderd is SIGKILLed and restarted. One orderd, so that its
// relay is the only one and the window is exact.
func (s *suite) eventsKill9(t *testing.T) {
	rc := newEventReceiver(t)
	inFlight := relay.DefaultWebhookInFlight
	s.run(t, scenario{
		name: "E1. kill -9 between the commit and the publish (events)",
		fault: fmt.Sprintf("at %s the webhook receiver stops answering; once %d deliveries wait on it (committed, read, not published) SIGKILL the one orderd, restart it %s later",
			s.scale.faultAt, inFlight, s.scale.downFor),
		instances: 1,
		args:      rc.args(),
		clients:   s.scale.clients / 3,
		think:     10 * time.Millisecond,
		load:      max(s.scale.load, s.scale.faultAt+s.scale.downFor+3*time.Second),
		inject: func(ctx context.Context, f *fault) error {
			if err := f.sleepUntil(ctx, s.scale.faultAt); err != nil {
				return err
			}
			rc.hold()
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			held, err := rc.waitHeld(hctx, inFlight)
			cancel()
			if err != nil {
				return err
			}
			before := len(rc.snapshot())
			f.faultAt = time.Now()
			if err := f.cl.Kill(0); err != nil {
				return err
			}
			// The killed orderd's connections die: the held deliveries end
			// unanswered (none reached the relay as delivered).
			pending, err := pendingEvents(ctx, f.dbURL)
			if err != nil {
				return err
			}
			rc.release()
			f.note("SIGKILL with %d deliveries in flight held unanswered, %d answered before; %d events pending in the outbox after the kill", held, before, pending)
			if err := f.sleepUntil(ctx, f.faultAt.Sub(f.start)+s.scale.downFor); err != nil {
				return err
			}
			restart := time.Now()
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := f.cl.Restart(rctx, 0); err != nil {
				return err
			}
			f.backAt = time.Now()
			f.note("restarted orderd was ready %s after its start", f.backAt.Sub(restart).Round(time.Millisecond))
			return nil
		},
		check: func(t *testing.T, f *fault, rep *cluster.Report) {
			onlyKinds(t, f, "orderd", nil, "201", loadtest.CodeRefused, loadtest.CodeTransport)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := rc.checkEvents(ctx, f.dbURL, time.Minute)
			res.report(t, f)
			// The held ones died with the connection and went out again.
			var died, redelivered int
			answeredAfter := map[string]bool{}
			for _, a := range rc.snapshot() {
				if a.answered && a.at.After(f.faultAt) {
					answeredAfter[a.id] = true
				}
			}
			for _, a := range rc.snapshot() {
				if a.held && !a.answered {
					died++
					if answeredAfter[a.id] {
						redelivered++
					}
				}
			}
			f.note("%d held deliveries died with orderd; %d of them delivered again after the restart", died, redelivered)
			if died == 0 || redelivered != died {
				t.Errorf("%d held deliveries died with orderd, %d delivered again: want all, and at least one", died, redelivered)
			}
		},
	})
}

// relayLeader waits until exactly one instance's flashorder_events_relay_leader
// is 1, and returns it.
func relayLeader(ctx context.Context, cl *cluster.Cluster, among []int) (int, error) {
	for {
		leader, n := -1, 0
		for _, i := range among {
			v, _, err := testenv.MetricSum(cl.URL(i), "flashorder_events_relay_leader")
			if err == nil && v == 1 {
				leader, n = i, n+1
			}
		}
		if n == 1 {
			return leader, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no single events relay leader among %v: %w", among, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// payer pays every second order answered 201, through one instance, until
// stopped: so that orders have a second event (order.paid, orderseq 2) and
// per-order order can break.
func payer(ctx context.Context, f *fault, baseURL string) (stop func() int) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		c := orderhttp.NewClient(baseURL, f.cl.AdminToken())
		paid, next := 0, 0
		for ctx.Err() == nil {
			ids := f.rec.Orders()
			for ; next < len(ids) && ctx.Err() == nil; next++ {
				if next%2 == 0 {
					continue
				}
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				if _, err := c.PayOrder(pctx, ids[next]); err == nil {
					paid++
				}
				pcancel()
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		done <- paid
	}()
	return func() int {
		cancel()
		return <-done
	}
}

// eventsSigstop: two orderd on one database, elected through ZooKeeper
// (session timeout 2s); while the relaying one has deliveries in flight
// (the receiver holds all 16 it keeps in flight), it is SIGSTOPped; the receiver then answers
// those 2xx, which the frozen relay cannot mark sent. The other instance
// takes over once the session expires and delivers them again (repeats by
// webhook-id, counted) and everything after; SIGCONT after the freeze.
// Meanwhile orders are paid, so that each has two events whose order must
// hold.
func (s *suite) eventsSigstop(t *testing.T) {
	const session = 2 * time.Second
	const frozen = 6 * time.Second
	// bound is the takeover the test accepts: the session's expiry, and the
	// election and first poll on a busy machine.
	const bound = session + 4*time.Second
	rc := newEventReceiver(t)
	var leader int
	var takeover, flowing time.Duration
	s.run(t, scenario{
		name: "E2. the relaying orderd frozen (SIGSTOP, events)",
		fault: fmt.Sprintf("at %s, with deliveries in flight, SIGSTOP the orderd that relays (of 2, ZooKeeper session %s) for %s, then SIGCONT",
			s.scale.faultAt, session, frozen),
		instances: 2,
		args:      append(rc.args(), "--lock", s.zkURL(fmt.Sprintf("events-stop-%d", time.Now().UnixNano()), "session_timeout="+session.String())),
		clients:   s.scale.clients / 3,
		think:     10 * time.Millisecond,
		// Each client on one instance: round-robin clients would all end up
		// waiting on the frozen one, and no order would show the events of
		// the other flowing.
		sticky:  true,
		timeout: 30 * time.Second,
		load:    max(s.scale.load, s.scale.faultAt+frozen+4*time.Second),
		inject: func(ctx context.Context, f *fault) error {
			lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			var err error
			leader, err = relayLeader(lctx, f.cl, []int{0, 1})
			cancel()
			if err != nil {
				return err
			}
			other := 1 - leader
			stopPay := payer(ctx, f, f.cl.URL(other))
			defer func() { f.note("%d orders paid during the run (through orderd %d)", stopPay(), other) }()
			if err := f.sleepUntil(ctx, s.scale.faultAt); err != nil {
				return err
			}
			rc.hold()
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			held, err := rc.waitHeld(hctx, relay.DefaultWebhookInFlight)
			cancel()
			if err != nil {
				return err
			}
			f.faultAt = time.Now()
			if err := f.cl.Signal(leader, syscall.SIGSTOP); err != nil {
				return err
			}
			rc.release() // answered 2xx: the frozen relay cannot mark them sent
			f.note("SIGSTOP orderd %d (the relay leader) with %d deliveries in flight, answered 2xx while it was frozen", leader, held)
			for {
				v, _, err := testenv.MetricSum(f.cl.URL(other), "flashorder_events_relay_leader")
				if err == nil && v == 1 {
					takeover = time.Since(f.faultAt)
					break
				}
				if time.Since(f.faultAt) > frozen {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := f.sleepUntil(ctx, f.faultAt.Sub(f.start)+frozen); err != nil {
				return err
			}
			if err := f.cl.Signal(leader, syscall.SIGCONT); err != nil {
				return err
			}
			f.backAt = time.Now()
			time.Sleep(time.Second) // more paid orders after the thaw
			return nil
		},
		check: func(t *testing.T, f *fault, rep *cluster.Report) {
			other := 1 - leader
			if takeover == 0 {
				t.Errorf("orderd %d did not take the relay over within the %s freeze", other, frozen)
			} else {
				f.note("orderd %d relayed %s after the SIGSTOP (session timeout %s, bound %s)", other, takeover.Round(time.Millisecond), session, bound)
				if takeover > bound {
					t.Errorf("takeover %s, over the bound %s", takeover.Round(time.Millisecond), bound)
				}
			}
			during := f.rec.Count(func(e cluster.Event) bool {
				return e.Target == other && e.Answer.Status == 201 && e.Done.After(f.faultAt) && e.Done.Before(f.backAt)
			})
			f.note("orderd %d answered %d orders 201 during the freeze", other, during)
			if during == 0 {
				t.Errorf("orderd %d took no order during the freeze", other)
			}
			// The thawed instance steps down: the other stays the leader.
			lctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			now, err := relayLeader(lctx, f.cl, []int{0, 1})
			cancel()
			if err != nil || now != other {
				t.Errorf("after SIGCONT the relay leader is %d (%v), want %d", now, err, other)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := rc.checkEvents(ctx, f.dbURL, time.Minute)
			// Events flow again: the first delivery of an event not seen
			// before the freeze.
			before := map[string]bool{}
			var repeatsAfterThaw int
			seenAll := map[string]bool{}
			for _, a := range rc.snapshot() {
				if !a.at.After(f.faultAt) {
					before[a.id] = true
				}
				if seenAll[a.id] && a.at.After(f.backAt) {
					repeatsAfterThaw++
				}
				seenAll[a.id] = true
			}
			heldIDs := map[string]bool{}
			for _, a := range rc.snapshot() {
				if a.held {
					heldIDs[a.id] = true
				}
			}
			for _, a := range rc.snapshot() {
				if a.answered && !a.held && !heldIDs[a.id] && !before[a.id] && a.at.After(f.faultAt) {
					flowing = a.at.Sub(f.faultAt)
					break
				}
			}
			f.note("first delivery of a new event %s after the SIGSTOP; %d repeats arrived after the SIGCONT", flowing.Round(time.Millisecond), repeatsAfterThaw)
			if flowing == 0 || flowing > frozen {
				t.Errorf("no new event delivered during the freeze (first after %s)", flowing)
			}
			res.report(t, f)
			// Every delivery answered while its relay was frozen went out
			// again from the new leader: at least once.
			count := map[string]int{}
			var heldAnswered []string
			for _, a := range rc.snapshot() {
				count[a.id]++
				if a.held && a.answered {
					heldAnswered = append(heldAnswered, a.id)
				}
			}
			again := 0
			for _, id := range heldAnswered {
				if count[id] > 1 {
					again++
				}
			}
			f.note("%d of the %d deliveries answered while their relay was frozen were delivered again by the new leader", again, len(heldAnswered))
			if len(heldAnswered) == 0 {
				t.Errorf("no delivery was answered while the relay was frozen: the window was missed")
			}
			if res.paid == 0 {
				t.Errorf("no order was paid: per-order order untested")
			}
		},
	})
}

// events: the primary's node crashes (as crash) under load with events on,
// one orderd relaying (elected through ZooKeeper) and orders being paid: on
// the new primary, every order has its events delivered, and no delivered
// event is of an order it does not have, nor out of its order's sequence.
func (p *patroniSuite) events(t *testing.T) {
	rc := newEventReceiver(t)
	var stopPay func() int
	p.scenario(t, scenario{
		name:     "P9. Primary node crash with events on (batch)",
		fault:    fmt.Sprintf("SIGKILL the primary's Patroni, postmaster and backends at %s under load, --events to a webhook, every second order paid; the node restarts and rejoins", p.scale.faultAt),
		strategy: "batch",
		args:     append(rc.args(), "--lock", p.zkURL(fmt.Sprintf("patroni-events-%d", time.Now().UnixNano()), "")),
		inject: func(ctx context.Context, f *fault) error {
			stopPay = payer(ctx, f, f.cl.URL(1))
			if err := f.sleepUntil(ctx, p.scale.faultAt); err != nil {
				return err
			}
			old, leader, err := killPrimary(ctx, f, "patroni-primary")
			if err != nil {
				return err
			}
			f.note("%s killed; %s was primary %s later", old, leader, time.Since(f.faultAt).Round(time.Millisecond))
			if err := rejoin(ctx, f, old); err != nil {
				return err
			}
			f.backAt = time.Now()
			return nil
		},
		check: func(t *testing.T, f *fault, rep *cluster.Report) {
			if stopPay != nil {
				f.note("%d orders paid during the run (through orderd 1)", stopPay())
			}
			checkAnswers(t, f)
			unknownOutcomes(t, f)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res := rc.checkEvents(ctx, f.dbURL, 2*time.Minute)
			res.report(t, f)
			if res.paid == 0 {
				t.Errorf("no order was paid: per-order order untested")
			}
		},
	})
}
