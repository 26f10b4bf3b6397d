package flashorder

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// EventType names what happened to an order. The values are the CloudEvents
// type attribute of the event.
type EventType string

// The order event types, one per status an order can enter.
const (
	EventOrderCreated   EventType = "order.created"
	EventOrderPaid      EventType = "order.paid"
	EventOrderCancelled EventType = "order.cancelled"
	EventOrderExpired   EventType = "order.expired"
)

// EventTypeFor returns the type of the event of an order entering status s.
func EventTypeFor(s Status) EventType {
	return EventType("order." + string(s))
}

// Status returns the status an order enters with an event of type t, the
// inverse of EventTypeFor ("" for a type that is none of the four).
func (t EventType) Status() Status {
	switch t {
	case EventOrderCreated, EventOrderPaid, EventOrderCancelled, EventOrderExpired:
		return Status(strings.TrimPrefix(string(t), "order."))
	}
	return ""
}

// EventState is where an event stands in the outbox.
type EventState string

// The outbox states: an event waits pending until the relay delivers it
// (sent) or gives up on it after its attempts (dead, until replayed).
const (
	EventPending EventState = "pending"
	EventSent    EventState = "sent"
	EventDead    EventState = "dead"
)

// Event is one committed change of an order, written to the outbox in the
// transaction that made the change.
type Event struct {
	// ID identifies the event (a UUID): the CloudEvents id and the
	// webhook-id, by which consumers drop a repeated delivery.
	ID      string
	OrderID string
	Type    EventType
	// Sequence numbers an order's events from 1 without gaps, in the order
	// the changes committed.
	Sequence int64
	// Time is when the change happened, in UTC with microsecond precision.
	Time time.Time
	// Order is the order's JSON as it is after the change.
	Order json.RawMessage

	// Position is the event's place in the outbox: the relay takes pending
	// events in this order.
	Position int64
	// Cursor is the event's place in the published stream, given by the
	// relay when it delivers the event or gives up on it; 0 before. The
	// admin feed pages by it.
	Cursor   int64
	State    EventState
	Attempts int
}

// Settlement is how a pending event ended: at Position in the outbox, sent
// or dead (State) after Attempts, given Cursor, which must be unused.
type Settlement struct {
	Position int64
	State    EventState
	Attempts int
	Cursor   int64
}

// EventPage is one page of the published stream.
type EventPage struct {
	Events []*Event
	// Next is the cursor to ask for the next page with: the last event's
	// cursor, or the cursor asked for when the page is empty.
	Next int64
	// More reports whether events follow this page already.
	More bool
}

// EventLog reads the published order events and hands dead letters back to
// the relay.
type EventLog interface {
	// Events returns up to limit events that the relay published or
	// dead-lettered after cursor after, in cursor order.
	Events(ctx context.Context, after int64, limit int) (*EventPage, error)
	// ReplayEvent makes the dead-lettered event id pending again, with no
	// attempts, for the relay to deliver next. It returns ENOTFOUND, or
	// EINVALIDSTATE when the event is not dead.
	ReplayEvent(ctx context.Context, id string) error
}

// Outbox is what the events relay needs of the outbox; only the one elected
// relay of a database calls it.
type Outbox interface {
	// PendingEvents returns up to limit pending events in outbox order.
	PendingEvents(ctx context.Context, limit int) ([]*Event, error)
	// LastCursor returns the highest cursor given so far (0 for none).
	LastCursor(ctx context.Context) (int64, error)
	// SettleEvents records, in one transaction, that each pending event
	// ended as its Settlement says; all or nothing (an event no longer
	// pending, or a cursor already given, refuses the whole call).
	SettleEvents(ctx context.Context, settled []Settlement) error
	// RecordAttempts records the failed attempts of a pending event.
	RecordAttempts(ctx context.Context, position int64, attempts int) error
	// Backlog returns the number of pending events and the time of the
	// oldest (zero when none).
	Backlog(ctx context.Context) (int64, time.Time, error)
	// PurgeEvents deletes up to limit sent events, oldest first, that were
	// sent before before and whose cursor is below below (the newest stays,
	// so that cursors go on from it), and returns how many it deleted. Dead
	// letters stay until replayed.
	PurgeEvents(ctx context.Context, before time.Time, below int64, limit int) (int, error)
}

// CloudEventsSpecVersion is the CloudEvents version of the events' JSON.
const CloudEventsSpecVersion = "1.0"

// EventSource is the CloudEvents source attribute of flashorder's order
// events.
const EventSource = "/flashorder/orders"

// cloudEvent is an Event in CloudEvents 1.0 JSON structured mode.
type cloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            EventType `json:"type"`
	Subject         string    `json:"subject"`
	Time            string    `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	// OrderSeq is an extension attribute (lower-case letters and digits,
	// as the spec requires): the event's per-order Sequence.
	OrderSeq int64           `json:"orderseq"`
	Data     json.RawMessage `json:"data"`
}

// CloudEvent returns e in CloudEvents 1.0 JSON structured mode, with source
// as its source attribute: the order as data, its id as subject, and the
// per-order sequence in the extension attribute orderseq.
func (e *Event) CloudEvent(source string) ([]byte, error) {
	data := e.Order
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	return json.Marshal(cloudEvent{
		SpecVersion: CloudEventsSpecVersion, ID: e.ID, Source: source, Type: e.Type, Subject: e.OrderID,
		Time: e.Time.UTC().Format(time.RFC3339Nano), DataContentType: "application/json", OrderSeq: e.Sequence, Data: data,
	})
}

// FormatCursor and ParseCursor convert an event cursor to and from the text
// the admin feed shows; ParseCursor reports false for anything but a
// non-negative integer.
func FormatCursor(c int64) string { return strconv.FormatInt(c, 10) }

// ParseCursor is FormatCursor's inverse; "" is 0, the stream's start.
func ParseCursor(s string) (int64, bool) {
	if s == "" {
		return 0, true
	}
	c, err := strconv.ParseInt(s, 10, 64)
	return c, err == nil && c >= 0
}

// EventPublisher delivers order events downstream: one implementation per
// sink (webhooks in package relay).
type EventPublisher interface {
	// Publish delivers e, encoded as cloudEvent (e.CloudEvent), and returns
	// nil only once the sink acknowledged it. It may be called again for an
	// event it delivered (after a crash): consumers drop repeats by e.ID.
	Publish(ctx context.Context, e *Event, cloudEvent []byte) error
}
