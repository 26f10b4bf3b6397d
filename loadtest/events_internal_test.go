package loadtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/relay"
)

// eventBody is the CloudEvent relay sends for event id of order (of user),
// its seq-th, of type typ, at t.
func eventBody(t *testing.T, id, order, user string, seq int64, typ flashorder.EventType, at time.Time) []byte {
	t.Helper()
	data, err := json.Marshal(flashorder.Order{ID: order, UserID: user, Status: flashorder.StatusCreated,
		Items: []flashorder.OrderItem{{SKU: "bench-0", Quantity: 1, PriceCents: 1999}}, CreatedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	e := flashorder.Event{ID: id, OrderID: order, Type: typ, Sequence: seq, Time: at, Order: data}
	b, err := e.CloudEvent(flashorder.EventSource)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckEvents feeds the events audit a stream as a sink delivers it:
// every 201 with its order.created, one delivered twice, an order the run
// paid (200) with its order.paid, an order of another run; then the same
// stream with one fault each, or with another answer to a pay or cancel.
// The clean streams pass, repeats and transitions counted; each fault
// fails the audit under its own kind and its own counter.
func TestCheckEvents(t *testing.T) {
	const run = "uRUN-"
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	type ev struct {
		id, order, user string
		seq             int64
		typ             flashorder.EventType
	}
	clean := []ev{
		{"e1", "o1", run + "1", 1, flashorder.EventOrderCreated},
		{"e2", "o2", run + "2", 1, flashorder.EventOrderCreated},
		{"e2", "o2", run + "2", 1, flashorder.EventOrderCreated}, // a repeat: dropped, counted
		{"e3", "o2", run + "2", 2, flashorder.EventOrderPaid},
		{"e4", "o3", run + "3", 1, flashorder.EventOrderCreated},
		{"x1", "other", "uOTHER-1", 1, flashorder.EventOrderCreated}, // another run's
	}
	byID := map[string]record{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("o%d", i)
		byID[id] = record{ID: id, User: fmt.Sprintf("%s%d", run, i), Items: []flashorder.ItemRequest{{SKU: "bench-0", Quantity: 1}}}
	}
	without := func(id string) []ev {
		var out []ev
		for _, e := range clean {
			if e.id != id {
				out = append(out, e)
			}
		}
		return out
	}
	// inDB is what GET /orders/{id} finds: the 201s, and o9, an order
	// whose request's outcome the client does not know.
	inDB := map[string]bool{"o1": true, "o2": true, "o3": true, "o9": true}
	paid := map[string]move{"o2": {flashorder.EventOrderPaid, moveDone}}
	with := func(extra map[string]move) map[string]move {
		out := maps.Clone(paid)
		maps.Copy(out, extra)
		return out
	}
	for _, tc := range []struct {
		name   string
		stream []ev
		moves  map[string]move // the pays and cancels made; nil: paid
		kind   string          // the violation's kind; "" for none
		check  func(*EventsAudit) bool
	}{
		{"clean", clean, nil, "", func(a *EventsAudit) bool {
			return a.Consumed == 4 && a.Deliveries == 5 && a.Duplicates == 1 && a.Foreign == 1 && a.Created == 3 && a.Lag.Count == 4 &&
				a.Paid == 1 && a.Cancelled == 0 && a.TransitionsMissing+a.TransitionsWrong+a.TransitionsRepeated == 0
		}},
		{"a cancel and an expiry", append(clean, ev{"e10", "o3", run + "3", 2, flashorder.EventOrderCancelled},
			ev{"e11", "o1", run + "1", 2, flashorder.EventOrderExpired}),
			with(map[string]move{"o3": {flashorder.EventOrderCancelled, moveDone}}), "",
			func(a *EventsAudit) bool { return a.Paid == 1 && a.Cancelled == 1 && a.Expired == 1 }},
		{"a pay refused, the order expired", append(clean, ev{"e10", "o3", run + "3", 2, flashorder.EventOrderExpired}),
			with(map[string]move{"o3": {flashorder.EventOrderPaid, moveRefused}}), "",
			func(a *EventsAudit) bool { return a.Paid == 1 && a.Refused == 1 && a.Expired == 1 }},
		{"a pay with no answer", clean, with(map[string]move{"o3": {flashorder.EventOrderPaid, moveUnknown}}), "",
			func(a *EventsAudit) bool { return a.Paid == 1 && a.TransitionErrors == 1 && a.TransitionsMissing == 0 }},
		{"order.paid missing", without("e3"), nil, "events transition missing",
			func(a *EventsAudit) bool { return a.TransitionsMissing == 1 && a.Paid == 1 }},
		{"order.cancelled missing", clean, with(map[string]move{"o3": {flashorder.EventOrderCancelled, moveDone}}), "events transition missing",
			func(a *EventsAudit) bool { return a.TransitionsMissing == 1 && a.Cancelled == 1 }},
		{"a refused pay without a transition event", clean, with(map[string]move{"o3": {flashorder.EventOrderPaid, moveRefused}}),
			"events transition missing", func(a *EventsAudit) bool { return a.TransitionsMissing == 1 && a.Refused == 1 }},
		{"a paid order cancelled", append(without("e3"), ev{"e10", "o2", run + "2", 2, flashorder.EventOrderCancelled}), nil,
			"events transition wrong", func(a *EventsAudit) bool { return a.TransitionsWrong == 1 && a.TransitionsMissing == 1 }},
		{"an order.paid nobody paid", append(clean, ev{"e10", "o3", run + "3", 2, flashorder.EventOrderPaid}), nil,
			"events transition wrong", func(a *EventsAudit) bool { return a.TransitionsWrong == 1 }},
		{"two seq-2 events, distinct ids", append(clean, ev{"e10", "o2", run + "2", 2, flashorder.EventOrderPaid}), nil,
			"events transition repeated", func(a *EventsAudit) bool { return a.TransitionsRepeated == 1 && a.Gaps == 1 }},
		{"unanswered order that exists", append(clean, ev{"e9", "o9", run + "9", 1, flashorder.EventOrderCreated}), nil, "",
			func(a *EventsAudit) bool { return a.Unanswered == 1 && a.Orphans == 0 && a.Created == 4 }},
		{"one order.created missing", without("e4"), nil, "events missing", func(a *EventsAudit) bool { return a.Missing == 1 && a.Created == 2 }},
		{"order.created twice, distinct ids", append(clean, ev{"e5", "o3", run + "3", 1, flashorder.EventOrderCreated}), nil, "events repeated",
			func(a *EventsAudit) bool { return a.Repeated == 1 && a.Gaps == 1 }},
		{"a gap in an order's sequence", append(without("e3"), ev{"e6", "o2", run + "2", 3, flashorder.EventOrderCancelled}), nil, "events gap",
			func(a *EventsAudit) bool { return a.Gaps == 1 }},
		{"the creation not first", append(without("e1"), ev{"e7", "o1", run + "1", 1, flashorder.EventOrderPaid}), nil, "events gap",
			func(a *EventsAudit) bool { return a.Gaps == 1 && a.Missing == 1 }},
		{"an event of an order that does not exist", append(clean, ev{"e8", "o8", run + "8", 1, flashorder.EventOrderCreated}), nil, "events orphan",
			func(a *EventsAudit) bool { return a.Orphans == 1 }},
		{"order.created of another user", append(without("e1"), ev{"e1", "o1", run + "7", 1, flashorder.EventOrderCreated}), nil, "events mismatch",
			func(a *EventsAudit) bool { return a.Mismatched == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := newEventLog(run)
			for i, e := range tc.stream {
				log.receive(eventBody(t, e.id, e.order, e.user, e.seq, e.typ, at), at.Add(time.Duration(i+1)*time.Millisecond))
			}
			var v violations
			moves := tc.moves
			if moves == nil {
				moves = paid
			}
			a := checkEvents(log, byID, moves, func(ids []string) map[string]error {
				out := map[string]error{}
				for _, id := range ids {
					if !inDB[id] {
						out[id] = &orderhttp.ClientError{Status: 404, Code: "not_found"}
					}
				}
				return out
			}, &v)
			if !tc.check(a) {
				t.Errorf("audit %+v", a)
			}
			if tc.kind == "" && len(v.list) > 0 {
				t.Errorf("violations in a stream without a fault: %q", v.list)
			}
			if tc.kind != "" && v.counts[tc.kind] == 0 {
				t.Errorf("no %q violation: %q", tc.kind, v.list)
			}
			for _, s := range v.list {
				if !strings.HasPrefix(s, "events") {
					t.Errorf("violation of another kind: %s", s)
				}
			}
		})
	}
}

// TestEventLogUndecodable: a message that is no order's CloudEvent fails
// the audit.
func TestEventLogUndecodable(t *testing.T) {
	log := newEventLog("uRUN-")
	log.receive([]byte("not json"), time.Now())
	var v violations
	a := checkEvents(log, nil, nil, func([]string) map[string]error { return nil }, &v)
	if a.Undecodable != 1 || v.counts["events"] != 1 {
		t.Errorf("audit %+v, violations %q", a, v.list)
	}
}

// TestWebhookReceiverVerifies posts orderd's webhooks to the receiver: one
// signed with its secret is received (204), one signed with another secret
// is refused (401) and fails the audit.
func TestWebhookReceiverVerifies(t *testing.T) {
	w, err := NewWebhookReceiver("127.0.0.1:0", NewWebhookSecret())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	log := newEventLog("uRUN-")
	if err := w.attach(log); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	body := eventBody(t, "e1", "o1", "uRUN-1", 1, flashorder.EventOrderCreated, at)
	post := func(secret string) int {
		t.Helper()
		key, err := relay.ParseSecret(secret)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, w.URL(), bytes.NewReader(body))
		req.Header.Set(relay.HeaderID, "e1")
		req.Header.Set(relay.HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
		req.Header.Set(relay.HeaderSignature, relay.Sign(key, "e1", at.Unix(), body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(w.Secret()); got != http.StatusNoContent {
		t.Errorf("signed with the secret: %d", got)
	}
	if got := post(NewWebhookSecret()); got != http.StatusUnauthorized {
		t.Errorf("signed with another secret: %d", got)
	}
	webhookSource{w}.close()
	var v violations
	a := checkEvents(log, map[string]record{"o1": {ID: "o1", User: "uRUN-1", Items: []flashorder.ItemRequest{{SKU: "bench-0", Quantity: 1}}}}, nil,
		func([]string) map[string]error { return nil }, &v)
	if a.Consumed != 1 || a.Created != 1 || a.Undecodable != 1 || v.counts["events"] != 1 || len(v.list) != 1 {
		t.Errorf("audit %+v, violations %q", a, v.list)
	}
}
