package gormdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/flashorder/flashorder"
)

// This file is the outbox of order events (Options.Events): the rows written
// in the transactions that change orders, and the reads and updates of the
// one elected relay (flashorder.Outbox) and of the admin feed
// (flashorder.EventLog).

var (
	_ flashorder.Outbox   = (*DB)(nil)
	_ flashorder.EventLog = (*DB)(nil)
)

// eventRow is one order event. id is the outbox order: the relay takes
// pending rows by id. pos is the published stream's cursor, given by the
// relay when it settles the row (delivered or dead-lettered): it grows in the
// order the relay settles rows, so a reader paging by it never skips a row,
// which paging by id would when a transaction holding a lower id commits
// late.
type eventRow struct {
	ID       int64  `gorm:"column:id;primaryKey;autoIncrement;index:idx_events_state_id,priority:2"`
	EventID  string `gorm:"column:event_id;size:36;not null;uniqueIndex"`
	OrderID  string `gorm:"column:order_id;size:36;not null;uniqueIndex:idx_events_order_seq,priority:1"`
	Seq      int64  `gorm:"column:seq;not null;uniqueIndex:idx_events_order_seq,priority:2"`
	Type     string `gorm:"column:event_type;size:32;not null"`
	TimeUS   int64  `gorm:"column:time_us;not null"`
	Data     string `gorm:"column:data;type:text;not null"`
	State    string `gorm:"column:state;size:16;not null;default:pending;index:idx_events_state_id,priority:1"`
	Attempts int    `gorm:"column:attempts;not null;default:0"`
	Pos      *int64 `gorm:"column:pos;uniqueIndex"`
	SentUS   int64  `gorm:"column:sent_us;not null;default:0"`
}

// TableName names eventRow's table for GORM.
func (eventRow) TableName() string { return "events" }

func (r *eventRow) event() *flashorder.Event {
	e := &flashorder.Event{ID: r.EventID, OrderID: r.OrderID, Type: flashorder.EventType(r.Type), Sequence: r.Seq,
		Time: time.UnixMicro(r.TimeUS).UTC(), Order: json.RawMessage(r.Data), Position: r.ID,
		State: flashorder.EventState(r.State), Attempts: r.Attempts}
	if r.Pos != nil {
		e.Cursor = *r.Pos
	}
	return e
}

// createdSeq and transitionSeq are the per-order sequences of an order's
// events. The state machine is flat (flashorder.Status.CanBecome): an order
// is created, then moves once; so its creation is event 1 and its one
// transition event 2, whatever else happened meanwhile.
const (
	createdSeq    = 1
	transitionSeq = 2
)

// newEventRow returns the event of o entering its status, the sequence seq.
func newEventRow(o *flashorder.Order, seq int64, at time.Time) (eventRow, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return eventRow{}, fmt.Errorf("gormdb: new event id: %w", err)
	}
	data, err := json.Marshal(o)
	if err != nil {
		return eventRow{}, fmt.Errorf("gormdb: encode order %q for its event: %w", o.ID, err)
	}
	return eventRow{EventID: id.String(), OrderID: o.ID, Seq: seq, Type: string(flashorder.EventTypeFor(o.Status)),
		TimeUS: at.UnixMicro(), Data: string(data)}, nil
}

// addCreatedEvents writes the order.created events of the orders among
// orders that inserted holds, with one statement (per bulkRows rows on MySQL
// and SQLite), when events are on.
func (t *tx) addCreatedEvents(ctx context.Context, orders []*flashorder.Order, inserted map[string]bool) error {
	if !t.events {
		return nil
	}
	rows := make([]eventRow, 0, len(orders))
	for _, o := range orders {
		if !inserted[o.ID] {
			continue
		}
		r, err := newEventRow(o, createdSeq, o.CreatedAt)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	return t.insertEvents(ctx, rows)
}

// addTransitionEvent writes the event of o's transition to its status, when
// events are on.
func (t *tx) addTransitionEvent(ctx context.Context, o *flashorder.Order) error {
	if !t.events {
		return nil
	}
	r, err := newEventRow(o, transitionSeq, time.Now())
	if err != nil {
		return err
	}
	return t.insertEvents(ctx, []eventRow{r})
}

// insertEventColumns starts every engine's insert of events.
const insertEventColumns = "INSERT INTO events (event_id, order_id, seq, event_type, time_us, data)"

// insertEvents inserts rows in bulk, in the dialect's form.
func (t *tx) insertEvents(ctx context.Context, rows []eventRow) error {
	if len(rows) == 0 {
		return nil
	}
	return t.dialect.insertEvents(ctx, t.conn(), rows)
}

// deleteEvents deletes the events of the orders that DeleteOrders deletes
// (in is its "IN (...)" or "= ANY($1)" condition), when events are on.
func (t *tx) deleteEvents(ctx context.Context, in string, args []any) error {
	if !t.events {
		return nil
	}
	if _, err := t.conn().ExecContext(ctx, "DELETE FROM events WHERE order_id "+in, args...); err != nil {
		return fmt.Errorf("gormdb: delete the events of refused orders: %w", err)
	}
	return nil
}

// eventColumns are the columns scanned by scanEvents, in its order.
const eventColumns = "id, event_id, order_id, seq, event_type, time_us, data, state, attempts, pos"

// scanEvents runs q, which selects eventColumns.
func (db *DB) scanEvents(ctx context.Context, q string, args ...any) ([]*flashorder.Event, error) {
	rows, err := db.gorm.WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*flashorder.Event
	for rows.Next() {
		var r eventRow
		if err := rows.Scan(&r.ID, &r.EventID, &r.OrderID, &r.Seq, &r.Type, &r.TimeUS, &r.Data, &r.State, &r.Attempts, &r.Pos); err != nil {
			return nil, err
		}
		out = append(out, r.event())
	}
	return out, rows.Err()
}

// PendingEvents implements flashorder.Outbox.
func (db *DB) PendingEvents(ctx context.Context, limit int) ([]*flashorder.Event, error) {
	return db.PendingEventsExcept(ctx, limit, nil)
}

// PendingEventsExcept is PendingEvents without the events at the positions
// in except: the relay's events in flight, which it would otherwise read
// again, bodies and all, at every read while their acknowledgements are
// awaited. limit counts the events returned, not those left out. On
// PostgreSQL except is one array parameter, so the statement's text, and
// its prepared plan, stay the same whatever the number in flight.
func (db *DB) PendingEventsExcept(ctx context.Context, limit int, except []int64) ([]*flashorder.Event, error) {
	q, args := "SELECT "+eventColumns+" FROM events WHERE state = ? ORDER BY id LIMIT ?", []any{string(flashorder.EventPending), limit}
	switch {
	case len(except) == 0:
	case db.Engine() == Postgres:
		q, args = "SELECT "+eventColumns+" FROM events WHERE state = ? AND id NOT IN (SELECT unnest(CAST(? AS text)::bigint[])) ORDER BY id LIMIT ?", []any{string(flashorder.EventPending), pgArray(except), limit}
	default:
		q, args = "SELECT "+eventColumns+" FROM events WHERE state = ? AND id NOT IN ? ORDER BY id LIMIT ?", []any{string(flashorder.EventPending), except, limit}
	}
	evs, err := db.scanEvents(ctx, q, args...)
	if err != nil {
		return nil, db.translate(fmt.Errorf("gormdb: read pending events: %w", err))
	}
	return evs, nil
}

// LastCursor implements flashorder.Outbox.
func (db *DB) LastCursor(ctx context.Context) (int64, error) {
	var last int64
	if err := db.gorm.WithContext(ctx).Raw("SELECT COALESCE(MAX(pos), 0) FROM events").Scan(&last).Error; err != nil {
		return 0, db.translate(fmt.Errorf("gormdb: read the last event cursor: %w", err))
	}
	return last, nil
}

// SettleEvents implements flashorder.Outbox in one transaction, so that a
// batch of deliveries costs one commit: on PostgreSQL one UPDATE marks the
// whole batch, its values passed as arrays (three round trips however many
// events), elsewhere one statement per event. The unique index on pos
// refuses a cursor that another relay (one elected by mistake) gave already;
// an event no longer pending refuses the whole call.
func (db *DB) SettleEvents(ctx context.Context, settled []flashorder.Settlement) error {
	if len(settled) == 0 {
		return nil
	}
	sentAt := time.Now().UnixMicro()
	return db.gorm.WithContext(ctx).Transaction(func(g *gorm.DB) error {
		if db.Engine() == Postgres {
			n := len(settled)
			ids, states, attempts, cursors := make([]int64, n), make([]string, n), make([]int64, n), make([]int64, n)
			for i, st := range settled {
				ids[i], states[i], attempts[i], cursors[i] = st.Position, string(st.State), int64(st.Attempts), st.Cursor
			}
			res := g.Exec(`UPDATE events AS e SET state = v.state, attempts = v.attempts, pos = v.pos, sent_us = ?
				FROM unnest(CAST(? AS text)::bigint[], CAST(? AS text)::text[], CAST(? AS text)::int[], CAST(? AS text)::bigint[]) AS v(id, state, attempts, pos)
				WHERE e.id = v.id AND e.state = ?`,
				sentAt, pgArray(ids), pgArray(states), pgArray(attempts), pgArray(cursors), string(flashorder.EventPending))
			if res.Error != nil {
				return db.translate(fmt.Errorf("gormdb: settle %d events: %w", n, res.Error))
			}
			if res.RowsAffected != int64(n) {
				return flashorder.Errorf(flashorder.EINVALIDSTATE, "%d of %d events are no longer pending", int64(n)-res.RowsAffected, n)
			}
			return nil
		}
		for _, st := range settled {
			res := g.Exec("UPDATE events SET state = ?, attempts = ?, pos = ?, sent_us = ? WHERE id = ? AND state = ?",
				string(st.State), st.Attempts, st.Cursor, sentAt, st.Position, string(flashorder.EventPending))
			if res.Error != nil {
				return db.translate(fmt.Errorf("gormdb: settle event %d as %s: %w", st.Position, st.State, res.Error))
			}
			if res.RowsAffected != 1 {
				return flashorder.Errorf(flashorder.EINVALIDSTATE, "event %d is no longer pending", st.Position)
			}
		}
		return nil
	})
}

// pgArray returns vs as a PostgreSQL array literal ({1,2} or {"a","b"}),
// passed as text and cast in the statement: GORM would expand a slice into
// one placeholder per element, and a changing number of placeholders is a
// new statement to prepare each time.
func pgArray[T int64 | string](vs []T) string {
	b := []byte{'{'}
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		switch v := any(v).(type) {
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case string:
			b = append(b, '"')
			for _, c := range []byte(v) {
				if c == '"' || c == '\\' {
					b = append(b, '\\')
				}
				b = append(b, c)
			}
			b = append(b, '"')
		}
	}
	return string(append(b, '}'))
}

// RecordAttempts implements flashorder.Outbox.
func (db *DB) RecordAttempts(ctx context.Context, position int64, attempts int) error {
	if err := db.gorm.WithContext(ctx).Exec("UPDATE events SET attempts = ? WHERE id = ? AND state = ?",
		attempts, position, string(flashorder.EventPending)).Error; err != nil {
		return db.translate(fmt.Errorf("gormdb: record the attempts of event %d: %w", position, err))
	}
	return nil
}

// Backlog implements flashorder.Outbox.
func (db *DB) Backlog(ctx context.Context) (int64, time.Time, error) {
	var b struct {
		N      int64
		Oldest int64
	}
	err := db.gorm.WithContext(ctx).Raw("SELECT COUNT(*) AS n, COALESCE(MIN(time_us), 0) AS oldest FROM events WHERE state = ?",
		string(flashorder.EventPending)).Scan(&b).Error
	if err != nil {
		return 0, time.Time{}, db.translate(fmt.Errorf("gormdb: read the event backlog: %w", err))
	}
	if b.N == 0 {
		return 0, time.Time{}, nil
	}
	return b.N, time.UnixMicro(b.Oldest).UTC(), nil
}

// PurgeEvents implements flashorder.Outbox with one DELETE of the oldest
// rows (the dialect's deleteFirst).
func (db *DB) PurgeEvents(ctx context.Context, before time.Time, below int64, limit int) (int, error) {
	q := db.dialect.deleteFirst("events", "state = ? AND sent_us < ? AND pos < ?")
	res := db.gorm.WithContext(ctx).Exec(q, string(flashorder.EventSent), before.UnixMicro(), below, limit)
	if res.Error != nil {
		return 0, db.translate(fmt.Errorf("gormdb: delete events sent before %s: %w", before.UTC().Format(time.RFC3339), res.Error))
	}
	return int(res.RowsAffected), nil
}

// Events implements flashorder.EventLog.
func (db *DB) Events(ctx context.Context, after int64, limit int) (*flashorder.EventPage, error) {
	evs, err := db.scanEvents(ctx, "SELECT "+eventColumns+" FROM events WHERE pos > ? ORDER BY pos LIMIT ?", after, limit+1)
	if err != nil {
		return nil, db.translate(fmt.Errorf("gormdb: read events after %d: %w", after, err))
	}
	page := &flashorder.EventPage{Next: after, Events: evs}
	if len(evs) > limit {
		page.Events, page.More = evs[:limit], true
	}
	if n := len(page.Events); n > 0 {
		page.Next = page.Events[n-1].Cursor
	}
	if page.Events == nil {
		page.Events = []*flashorder.Event{}
	}
	return page, nil
}

// ReplayEvent implements flashorder.EventLog.
func (db *DB) ReplayEvent(ctx context.Context, id string) error {
	g := db.gorm.WithContext(ctx)
	res := g.Exec("UPDATE events SET state = ?, attempts = 0, pos = NULL, sent_us = 0 WHERE event_id = ? AND state = ?",
		string(flashorder.EventPending), id, string(flashorder.EventDead))
	if res.Error != nil {
		return db.translate(fmt.Errorf("gormdb: replay event %q: %w", id, res.Error))
	}
	if res.RowsAffected == 1 {
		return nil
	}
	var states []string
	if err := g.Raw("SELECT state FROM events WHERE event_id = ?", id).Scan(&states).Error; err != nil {
		return db.translate(fmt.Errorf("gormdb: read event %q: %w", id, err))
	}
	if len(states) == 0 {
		return flashorder.Errorf(flashorder.ENOTFOUND, "event not found")
	}
	return flashorder.Errorf(flashorder.EINVALIDSTATE, "the event is %s; only a dead event can be replayed", states[0])
}
