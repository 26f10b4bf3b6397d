package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/relay"
)

// DefaultEventsWait bounds the wait, after the load, for the relay to
// deliver the run's events (Config.EventsWait): a relay that has not
// delivered them by then fails the audit.
const DefaultEventsWait = time.Minute

// eventsQuiet is how long no new event of the run must arrive, once every
// 201 has its order.created and orderd's backlog reads 0, before the audit
// takes the stream as drained: events of orders whose 201 the client never
// got, and repeats, come in that time.
const eventsQuiet = time.Second

// eventsSlack is how long before the run's start the consumer starts
// reading the stream: JetStream stamps a message by its server's clock.
const eventsSlack = 5 * time.Second

// EventsAudit is the audit of the order events a run consumed (Config.Events):
// every 201 has exactly one order.created after deduplication by event id,
// each order's events are numbered 1..n without a gap (orderseq), every
// pay and cancel the run made after the load (Config.EventsPay,
// EventsCancel) has its event, and no event is of an order that does not
// exist. Only the events of the run's orders count (their users are the
// run's); the others are counted apart.
type EventsAudit struct {
	// URL is where the events were consumed from.
	URL string `json:"url"`
	// Drained reports that the relay delivered the run's events within
	// Config.EventsWait after the load; WaitSeconds is how long that took
	// (or the wait, when it did not).
	Drained     bool    `json:"drained"`
	WaitSeconds float64 `json:"wait_seconds"`
	// Deliveries counts the messages of the run's orders received, repeats
	// included; Consumed the distinct events (by event id) among them, and
	// Duplicates the repeats dropped (at least once delivery: not a fault).
	Deliveries int64 `json:"deliveries"`
	Consumed   int   `json:"consumed"`
	Duplicates int64 `json:"duplicates"`
	// Foreign counts the deliveries of events of other orders (other runs,
	// other clients), left out of the audit.
	Foreign int64 `json:"foreign"`
	// Created counts the distinct order.created events of the run's orders.
	Created int `json:"created"`
	// Missing counts the 201s without an order.created; Repeated those with
	// more than one (distinct ids).
	Missing  int `json:"missing"`
	Repeated int `json:"repeated"`
	// Gaps counts the orders whose events' orderseq are not 1..n, one
	// order.created first.
	Gaps int `json:"gaps"`
	// Orphans counts the orders with events that do not exist in the
	// database (GET /orders/{id} says 404).
	Orphans int `json:"orphans"`
	// Unanswered counts the orders with events that exist but whose 201 the
	// client never got: requests that timed out or got a 5xx.
	Unanswered int `json:"unanswered"`
	// Mismatched counts the order.created events whose order (user, items)
	// differs from the 201's; Undecodable the messages that are no
	// CloudEvent of an order, and the webhooks whose signature did not
	// verify.
	Mismatched  int `json:"mismatched"`
	Undecodable int `json:"undecodable"`
	// Paid and Cancelled count the 201s the run paid and cancelled after
	// the load (Config.EventsPay, EventsCancel) and got 200 for; Refused
	// those answered 409 invalid_state, which had moved already (expired),
	// and TransitionErrors those answered otherwise or not at all (a
	// violation; their events are not judged).
	Paid             int `json:"paid"`
	Cancelled        int `json:"cancelled"`
	Refused          int `json:"transitions_refused"`
	TransitionErrors int `json:"transition_errors"`
	// Expired counts the distinct order.expired events of the run's orders.
	Expired int `json:"expired"`
	// TransitionsMissing counts the orders paid or cancelled with a 200
	// that have no event of that type with orderseq 2, and the refused ones
	// that have no transition event at all.
	TransitionsMissing int `json:"transitions_missing"`
	// TransitionsWrong counts the 201s whose transition event contradicts
	// what the client was told: an order paid with a 200 whose event is
	// order.cancelled or order.expired (or the reverse), or an order.paid
	// or order.cancelled of an order the run got no such 200 for.
	TransitionsWrong int `json:"transitions_wrong"`
	// TransitionsRepeated counts the 201s with more than one transition
	// event of distinct ids (two with orderseq 2, say; Gaps counts those
	// too): an order moves out of created once.
	TransitionsRepeated int `json:"transitions_repeated"`
	// Lag is the publish lag of the distinct events: from the event's time
	// (for order.created the order's created_at) to its arrival at
	// orderbench; LagDist its distribution.
	Lag     Percentiles `json:"publish_lag"`
	LagDist []DistPoint `json:"publish_lag_distribution,omitempty"`
}

// receivedEvent is one distinct event of the run's orders, as received.
type receivedEvent struct {
	ID    string
	Type  flashorder.EventType
	Order string
	Seq   int64
	// User and Items are the order's, from the event's data.
	User  string
	Items []flashorder.OrderItem
}

// cloudEventIn is the part of an order event's CloudEvent the audit reads.
type cloudEventIn struct {
	ID       string               `json:"id"`
	Type     flashorder.EventType `json:"type"`
	Subject  string               `json:"subject"`
	Time     time.Time            `json:"time"`
	OrderSeq int64                `json:"orderseq"`
	Data     *flashorder.Order    `json:"data"`
}

// eventLog gathers the events a run receives, from any sink: the run's
// distinct events by id, the repeats, the others, and the publish lag.
type eventLog struct {
	// runUsers is the prefix of the run's user ids: an event of an order of
	// such a user is the run's.
	runUsers string

	mu          sync.Mutex
	events      map[string]*receivedEvent
	created     map[string]int // distinct order.created per order
	moved       map[string]int // distinct other events (transitions) per order
	deliveries  int64
	duplicates  int64
	foreign     int64
	undecodable int
	bad         []string  // the first undecodable ones, for the audit
	last        time.Time // arrival of the last event of the run
	lag         *hdrhistogram.Histogram
}

func newEventLog(runUsers string) *eventLog {
	return &eventLog{runUsers: runUsers, events: map[string]*receivedEvent{}, created: map[string]int{}, moved: map[string]int{}, lag: NewHistogram()}
}

// receive takes one delivered message, the CloudEvent body, that arrived at
// at.
func (l *eventLog) receive(body []byte, at time.Time) {
	var ce cloudEventIn
	err := json.Unmarshal(body, &ce)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil || ce.ID == "" || ce.Data == nil {
		l.rejectLocked(fmt.Sprintf("a message that is not an order's CloudEvent: %.120q", body))
		return
	}
	if !strings.HasPrefix(ce.Data.UserID, l.runUsers) {
		l.foreign++
		return
	}
	l.deliveries++
	l.last = at
	if _, ok := l.events[ce.ID]; ok {
		l.duplicates++
		return
	}
	l.events[ce.ID] = &receivedEvent{ID: ce.ID, Type: ce.Type, Order: ce.Subject, Seq: ce.OrderSeq, User: ce.Data.UserID, Items: ce.Data.Items}
	if ce.Type == flashorder.EventOrderCreated {
		l.created[ce.Subject]++
	} else {
		l.moved[ce.Subject]++
	}
	RecordLatency(l.lag, at.Sub(ce.Time))
}

// reject notes a message that is no valid event: msg says why.
func (l *eventLog) reject(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rejectLocked(msg)
}

func (l *eventLog) rejectLocked(msg string) {
	l.undecodable++
	if len(l.bad) < maxPerKind {
		l.bad = append(l.bad, msg)
	}
}

// missing returns the orders of ids that have no order.created yet, those
// of moved that have no transition event yet, and when the run's last
// event arrived.
func (l *eventLog) missing(ids, moved []string) (still, unmoved []string, last time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if l.created[id] == 0 {
			still = append(still, id)
		}
	}
	for _, id := range moved {
		if l.moved[id] == 0 {
			unmoved = append(unmoved, id)
		}
	}
	return still, unmoved, l.last
}

// eventsSource consumes the events of a sink into an eventLog until closed.
type eventsSource interface {
	// problem says why no event may have come, "" when nothing is known
	// to be wrong.
	problem() string
	close()
}

// natsSource reads a NATS JetStream stream with an ordered consumer: an
// ephemeral consumer that the client recreates, from where it was, when it
// fails, so every message is delivered in the stream's order.
type natsSource struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	err  error
	cons jetstream.ConsumeContext
}

// startNATS connects to the servers of rawURL (orderd's --events
// nats://host:port[,host:port]/subject-prefix) and reads the prefix's
// stream from since on into log, in the background: the stream may not
// exist yet (the relay creates it at its first publish).
func startNATS(ctx context.Context, rawURL string, since time.Time, log *eventLog) (*natsSource, error) {
	servers, prefix, err := relay.ParseNATSURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("loadtest: events: %w", err)
	}
	nc, err := nats.Connect(strings.Join(servers, ","), nats.Name("orderbench events audit"),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("loadtest: events: NATS connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("loadtest: events: JetStream: %w", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &natsSource{nc: nc, cancel: cancel, done: make(chan struct{})}
	stream := relay.StreamName(prefix)
	go func() {
		defer close(s.done)
		for {
			cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
				FilterSubjects: []string{prefix + ".>"},
				DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
				OptStartTime:   &since,
			})
			var cc jetstream.ConsumeContext
			if err == nil {
				cc, err = cons.Consume(func(m jetstream.Msg) { log.receive(m.Data(), time.Now()) })
			}
			s.mu.Lock()
			s.err, s.cons = err, cc
			s.mu.Unlock()
			if err == nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return s, nil
}

func (s *natsSource) problem() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return fmt.Sprintf("consuming the stream: %v", s.err)
	case s.cons == nil:
		return "the consumer was not created yet"
	case !s.nc.IsConnected():
		return "not connected to NATS"
	}
	return ""
}

func (s *natsSource) close() {
	s.cancel()
	<-s.done
	s.mu.Lock()
	if s.cons != nil {
		s.cons.Stop()
	}
	s.mu.Unlock()
	s.nc.Close()
}

// eventsRun is a run's consumption of its order events.
type eventsRun struct {
	url string
	log *eventLog
	src eventsSource
}

// startEvents starts consuming the run's events, of the orders of users
// whose ids start with runUsers: from cfg.EventsReceiver, or from the stream
// cfg.Events from since on.
func startEvents(ctx context.Context, cfg Config, runUsers string, since time.Time) (*eventsRun, error) {
	log := newEventLog(runUsers)
	if w := cfg.EventsReceiver; w != nil {
		if err := w.attach(log); err != nil {
			return nil, err
		}
		return &eventsRun{url: w.URL(), log: log, src: webhookSource{w}}, nil
	}
	if !strings.HasPrefix(cfg.Events, "nats://") {
		return nil, fmt.Errorf("loadtest: events %q: want nats://host:port[,host:port]/subject-prefix (or a webhook receiver)", cfg.Events)
	}
	src, err := startNATS(ctx, cfg.Events, since, log)
	if err != nil {
		return nil, err
	}
	return &eventsRun{url: cfg.Events, log: log, src: src}, nil
}

// drain waits until the relay delivered the run's events: every order of
// want has its order.created, every order of moves that moved (or had) a
// transition event, orderd's backlog (flashorder_events_backlog,
// read from each of urls that has it) is 0, and no event of the run came for
// eventsQuiet; at most wait. It returns whether they were, and how long it
// waited.
func (e *eventsRun) drain(ctx context.Context, client *http.Client, urls []string, want map[string]record, moves map[string]move,
	wait time.Duration) (bool, time.Duration) {
	start := time.Now()
	deadline := start.Add(wait)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var nextScrape time.Time
	backlogZero := false
	pending := slices.Collect(maps.Keys(want))
	var pendingMoves []string
	for id, m := range moves {
		if m.state != moveUnknown {
			pendingMoves = append(pendingMoves, id)
		}
	}
	for {
		now := time.Now()
		var last time.Time
		pending, pendingMoves, last = e.log.missing(pending, pendingMoves)
		if len(pending)+len(pendingMoves) == 0 && !now.Before(nextScrape) {
			backlogZero = eventsBacklog(ctx, client, urls) == 0
			nextScrape = now.Add(500 * time.Millisecond)
		}
		if len(pending)+len(pendingMoves) == 0 && backlogZero && now.Sub(last) >= eventsQuiet {
			return true, now.Sub(start)
		}
		if now.After(deadline) {
			return false, now.Sub(start)
		}
		select {
		case <-ctx.Done():
			return false, time.Since(start)
		case <-tick.C:
		}
	}
}

// eventsBacklog returns the sum of flashorder_events_backlog over the
// orderd instances at urls that report it, -1 when one could not be read.
// An instance without it (no --events, or not the relaying one yet) adds 0.
func eventsBacklog(ctx context.Context, client *http.Client, urls []string) float64 {
	var sum float64
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
		if err != nil {
			return -1
		}
		resp, err := client.Do(req)
		if err != nil {
			return -1
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "flashorder_events_backlog "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					f = -1
				}
				sum += f
			}
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return -1
		}
	}
	return sum
}

// auditEvents waits for the relay to drain (Config.EventsWait), then checks
// the run's events against its 201s (byID) and the pays and cancels made
// after the load (moves): see checkEvents. Orders with
// events that the client got no 201 for are looked up with GET
// /orders/{id}; those of 201s need not be, the read-back checks they exist.
func (r *runner) auditEvents(ctx context.Context, admin *orderhttp.Client, byID map[string]record, moves map[string]move, v *violations) *EventsAudit {
	e := r.events
	drained, waited := e.drain(ctx, admin.HTTPClient, r.cfg.URLs, byID, moves, r.cfg.EventsWait)
	why := ""
	if p := e.src.problem(); p != "" && !drained {
		why = " (" + p + ")"
	}
	e.src.close()
	ea := checkEvents(e.log, byID, moves, func(ids []string) map[string]error { return lookupOrders(ctx, admin, ids) }, v)
	ea.URL = e.url
	ea.Drained, ea.WaitSeconds = drained, waited.Seconds()
	if !drained {
		v.add("events", "the relay did not deliver the run's events within %s after the load%s: %d of %d 201s without order.created, "+
			"%d of %d pays and cancels answered 200 without their event then", r.cfg.EventsWait, why, ea.Missing, len(byID),
			ea.TransitionsMissing, ea.Paid+ea.Cancelled)
	}
	return ea
}

// lookupOrders reads the orders ids with GET /orders/{id}, 16 at a time,
// and returns the error of each (nil: it exists).
func lookupOrders(ctx context.Context, admin *orderhttp.Client, ids []string) map[string]error {
	out := make(map[string]error, len(ids))
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(16)
	for _, id := range ids {
		g.Go(func() error {
			_, err := admin.Order(ctx, id)
			mu.Lock()
			out[id] = err
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	return out
}

// checkEvents checks the events in log against the run's 201s (byID) and
// the pays and cancels made after the load (moves, by order id): each 201
// has exactly one order.created (distinct event ids) with the 201's user
// and items; each order's events are numbered 1..n without a gap or a
// repeat, order.created first and only first; each 201 has at most one
// transition event, the one its 200 promised with orderseq 2 (any, when
// refused as moved already), and none that the run did not make (see
// checkTransitions); every order with events that
// got no 201 exists (lookup, called once with those ids, returns nil for
// an order that exists and an orderhttp.ClientError with status 404 for
// one that does not). Repeats by event id are counted, not violations.
func checkEvents(log *eventLog, byID map[string]record, moves map[string]move, lookup func(ids []string) map[string]error, v *violations) *EventsAudit {
	log.mu.Lock()
	defer log.mu.Unlock()
	ea := &EventsAudit{Deliveries: log.deliveries, Consumed: len(log.events), Duplicates: log.duplicates, Foreign: log.foreign,
		Undecodable: log.undecodable, Lag: PercentilesOf(log.lag), LagDist: Distribution(log.lag)}
	for _, b := range log.bad {
		v.add("events", "%s", b)
	}
	perOrder := map[string][]*receivedEvent{}
	for _, ev := range log.events {
		perOrder[ev.Order] = append(perOrder[ev.Order], ev)
		if ev.Type == flashorder.EventOrderExpired {
			ea.Expired++
		}
	}
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		rec := byID[id]
		var created []*receivedEvent
		for _, ev := range perOrder[id] {
			if ev.Type == flashorder.EventOrderCreated {
				created = append(created, ev)
			}
		}
		ea.Created += len(created)
		switch {
		case len(created) == 0:
			ea.Missing++
			v.add("events missing", "order %s (user %s) was answered 201 and no order.created came", id, rec.User)
		case len(created) > 1:
			ea.Repeated++
			v.add("events repeated", "order %s has %d order.created events with distinct ids", id, len(created))
		}
		for _, ev := range created {
			if ev.User != rec.User || !sameOrderItems(ev.Items, rec.Items) {
				ea.Mismatched++
				v.add("events mismatch", "order.created %s of order %s is user %s items %v, the 201 was for user %s items %v",
					ev.ID, id, ev.User, ev.Items, rec.User, rec.Items)
			}
		}
		checkTransitions(ea, id, perOrder[id], moves, v)
	}
	var unanswered []string
	for _, id := range slices.Sorted(maps.Keys(perOrder)) {
		evs := perOrder[id]
		if _, ok := byID[id]; !ok {
			unanswered = append(unanswered, id)
			ea.Created += countCreated(evs)
		}
		if gap := sequenceProblem(evs); gap != "" {
			ea.Gaps++
			v.add("events gap", "order %s: %s", id, gap)
		}
	}
	if len(unanswered) > 0 {
		found := lookup(unanswered)
		for _, id := range unanswered {
			var ce *orderhttp.ClientError
			switch err := found[id]; {
			case err == nil:
				ea.Unanswered++
			case errors.As(err, &ce) && ce.Status == http.StatusNotFound:
				ea.Orphans++
				v.add("events orphan", "order %s has %d event(s) and does not exist (GET says 404)", id, len(perOrder[id]))
			default:
				v.add("events orphan", "read order %s, which has events and no 201: %v", id, err)
			}
		}
	}
	return ea
}

// checkTransitions checks the transition events (all but order.created) of
// order id, one of the run's 201s, against the pay or cancel the run made
// of it, if any (moves), into ea: a 200 must have its event with orderseq
// 2, a 409 invalid_state some transition event; no event may contradict a
// 200 or be a pay or cancel the run got no 200 for; at most one.
func checkTransitions(ea *EventsAudit, id string, evs []*receivedEvent, moves map[string]move, v *violations) {
	var moved []*receivedEvent
	for _, ev := range evs {
		if ev.Type != flashorder.EventOrderCreated {
			moved = append(moved, ev)
		}
	}
	slices.SortFunc(moved, func(a, b *receivedEvent) int { return int(a.Seq - b.Seq) })
	if len(moved) > 1 {
		ea.TransitionsRepeated++
		v.add("events transition repeated", "order %s has %d transition events with distinct ids: %s", id, len(moved), describeEvents(moved))
	}
	m, made := moves[id]
	switch {
	case !made:
	case m.state == moveUnknown:
		ea.TransitionErrors++
		return
	case m.state == moveRefused:
		ea.Refused++
		if len(moved) == 0 {
			ea.TransitionsMissing++
			v.add("events transition missing", "order %s was refused as moved already (409 invalid_state) and has no transition event", id)
		}
	case m.want == flashorder.EventOrderPaid:
		ea.Paid++
	default:
		ea.Cancelled++
	}
	if made && m.state == moveDone && !slices.ContainsFunc(moved, func(ev *receivedEvent) bool { return ev.Type == m.want && ev.Seq == 2 }) {
		ea.TransitionsMissing++
		v.add("events transition missing", "order %s was answered 200 to its %s and no %s with orderseq 2 came (its transition events: %s)",
			id, verbOf(m.want), m.want, describeEvents(moved))
	}
	for _, ev := range moved {
		var wrong bool
		switch {
		case made && m.state == moveDone:
			wrong = ev.Type != m.want
		default:
			// Nothing the run got a 200 for: only the sweeper moves it.
			wrong = ev.Type != flashorder.EventOrderExpired
		}
		if wrong {
			ea.TransitionsWrong++
			what := "the run neither paid nor cancelled it"
			if made {
				what = fmt.Sprintf("its %s was answered %s", verbOf(m.want), map[moveState]string{moveDone: "200", moveRefused: "409 invalid_state"}[m.state])
			}
			v.add("events transition wrong", "order %s has %s %s (orderseq %d), and %s", id, ev.Type, ev.ID, ev.Seq, what)
			break
		}
	}
}

// verbOf names the request whose 200 promises an event of type t.
func verbOf(t flashorder.EventType) string {
	if t == flashorder.EventOrderPaid {
		return "pay"
	}
	return "cancel"
}

// describeEvents lists evs for a violation: type, id and orderseq of each.
func describeEvents(evs []*receivedEvent) string {
	if len(evs) == 0 {
		return "none"
	}
	parts := make([]string, len(evs))
	for i, ev := range evs {
		parts[i] = fmt.Sprintf("%s %s (orderseq %d)", ev.Type, ev.ID, ev.Seq)
	}
	return strings.Join(parts, ", ")
}

func countCreated(evs []*receivedEvent) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == flashorder.EventOrderCreated {
			n++
		}
	}
	return n
}

// sequenceProblem describes what is wrong with one order's distinct events:
// their orderseq must be 1..n, each once, the first order.created and no
// other; "" when nothing is.
func sequenceProblem(evs []*receivedEvent) string {
	evs = slices.Clone(evs)
	slices.SortFunc(evs, func(a, b *receivedEvent) int { return int(a.Seq - b.Seq) })
	for i, ev := range evs {
		want := int64(i + 1)
		switch {
		case ev.Seq < 1:
			return fmt.Sprintf("orderseq %d (%s %s)", ev.Seq, ev.Type, ev.ID)
		case ev.Seq < want:
			return fmt.Sprintf("two events with orderseq %d (%s %s and %s %s)", ev.Seq, evs[i-1].Type, evs[i-1].ID, ev.Type, ev.ID)
		case ev.Seq > want:
			return fmt.Sprintf("orderseq %d (%s) follows %d: %d missing", ev.Seq, ev.Type, want-1, ev.Seq-want)
		case (ev.Seq == 1) != (ev.Type == flashorder.EventOrderCreated):
			return fmt.Sprintf("orderseq %d is %s", ev.Seq, ev.Type)
		}
	}
	return ""
}
