// Package relay publishes the order events of the outbox (flashorder.Outbox)
// downstream: the Relay, elected through a flashorder.Locker like the expiry
// sweeper, so that one instance of all that share a database publishes; and
// the sinks it publishes to (Webhook, signed per the Standard Webhooks
// specification).
//
// Delivery is at least once and in outbox order: the relay takes pending
// events oldest first and does not go on to the next until the sink
// acknowledged one, or the event used up its attempts and became a dead
// letter. An event published just before a crash, and not yet marked sent,
// is published again by the next relay: consumers drop repeats by event id.
package relay

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/elect"
)

// LockKey is the lock whose holder is the one instance that relays events.
const LockKey = "flashorder/events-relay"

// Defaults of Options.
const (
	DefaultMaxAttempts = 10
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = 5 * time.Minute
	DefaultPoll        = 200 * time.Millisecond
	DefaultBatch       = 100
	// DefaultRetention is orderd's --events-retention default.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultSource is the CloudEvents source attribute of the events.
	DefaultSource = flashorder.EventSource
)

// backlogEvery bounds how often the leader reads the backlog for OnBacklog.
const backlogEvery = time.Second

// Retention's deletes: every purgeEvery the leader deletes the events sent
// before Retention, purgeBatch per statement and at most purgeBatches
// statements a round, so that a huge backlog of old rows goes over several
// rounds instead of in one long burst.
const (
	purgeEvery   = time.Minute
	purgeBatch   = 1000
	purgeBatches = 10
)

// Options tunes a Relay; zero fields take their defaults.
type Options struct {
	// MaxAttempts is how often an event is offered to the sink before it
	// becomes a dead letter; the default is DefaultMaxAttempts.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait after a failed attempt: it
	// doubles from MinBackoff up to MaxBackoff, with jitter (a random
	// point in its upper half). Defaults: DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Poll is how long the leader waits when no event is pending; the
	// default is DefaultPoll.
	Poll time.Duration
	// Batch is how many pending events one read takes; the default is
	// DefaultBatch.
	Batch int
	// Source is the events' CloudEvents source; the default is
	// DefaultSource.
	Source string
	// Retention, when positive, is how long sent events stay in the outbox
	// (and the admin feed); the leader deletes older ones about once a
	// minute. Dead letters stay until replayed. Zero keeps every event.
	Retention time.Duration
	// Logger receives leadership changes, failures and dead letters; the
	// default is slog.Default().
	Logger *slog.Logger

	// OnLeader, when set, is called with true when this instance starts
	// relaying and with false when it stops.
	OnLeader func(leading bool)
	// OnPublished, OnFailure and OnDead, when set, are called after each
	// delivered event, each failed attempt and each dead letter.
	OnPublished, OnFailure, OnDead func()
	// OnBacklog, when set, is called by the leader about once a second with
	// the pending events and the time of the oldest (zero when none).
	OnBacklog func(rows int64, oldest time.Time)
}

// Relay publishes the outbox's events to a sink on exactly one instance at a
// time. Every instance runs one; the instance holding LockKey relays until
// it loses the lock, the others wait in Lock. When the leader dies its lock
// is released by the backend and a waiting instance takes over, starting at
// the oldest event still pending.
type Relay struct {
	outbox flashorder.Outbox
	sink   flashorder.EventPublisher
	locker flashorder.Locker
	opts   Options

	bg elect.Background
}

// New returns a relay of outbox's events to sink, elected through locker.
func New(outbox flashorder.Outbox, sink flashorder.EventPublisher, locker flashorder.Locker, opts Options) *Relay {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Source == "" {
		opts.Source = DefaultSource
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Relay{outbox: outbox, sink: sink, locker: locker, opts: opts}
}

// Start runs the relay in the background until Stop.
func (r *Relay) Start() { r.bg.Start(r.Run) }

// Stop stops a started relay and waits until it stepped down and released
// its lock.
func (r *Relay) Stop() { r.bg.Stop() }

// Run competes for leadership and relays while leading, until ctx ends.
func (r *Relay) Run(ctx context.Context) {
	elect.Run(ctx, r.locker, LockKey, elect.Options{Name: "events relay", Logger: r.opts.Logger, Retry: r.opts.Poll, OnLeader: r.opts.OnLeader}, r.lead)
}

// lead relays until ctx ends (the lock lost, or Stop).
func (r *Relay) lead(ctx context.Context) {
	for ctx.Err() == nil {
		if err := r.drain(ctx); err != nil && ctx.Err() == nil {
			r.opts.Logger.Warn("events relay: read or mark the outbox", "err", err)
			elect.Sleep(ctx, r.opts.Poll)
		}
	}
}

// drain publishes pending events in outbox order until ctx ends or the
// outbox fails; the cursor it gives settled events continues from the
// outbox's last.
func (r *Relay) drain(ctx context.Context) error {
	cursor, err := r.outbox.LastCursor(ctx)
	if err != nil {
		return err
	}
	var backlogAt, purgeAt time.Time
	for ctx.Err() == nil {
		if r.opts.Retention > 0 && time.Since(purgeAt) >= purgeEvery {
			purgeAt = time.Now()
			if err := r.purge(ctx, cursor); err != nil {
				return err
			}
		}
		if r.opts.OnBacklog != nil && time.Since(backlogAt) >= backlogEvery {
			backlogAt = time.Now()
			rows, oldest, err := r.outbox.Backlog(ctx)
			if err != nil {
				return err
			}
			r.opts.OnBacklog(rows, oldest)
		}
		evs, err := r.outbox.PendingEvents(ctx, r.opts.Batch)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			elect.Sleep(ctx, r.opts.Poll)
			continue
		}
		var done []flashorder.Settlement
		for _, e := range evs {
			if err := r.deliver(ctx, e, &cursor, &done); err != nil {
				// What was published is marked, even as the relay
				// stops, so that a stop republishes nothing.
				return errors.Join(err, r.settle(context.WithoutCancel(ctx), &done))
			}
		}
		if err := r.settle(ctx, &done); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// settleTimeout bounds the marking of a stopping relay's last deliveries.
const settleTimeout = 5 * time.Second

// settle marks the events in done as they ended, in one transaction (one
// commit for a batch of deliveries, not one per event), and empties done.
func (r *Relay) settle(ctx context.Context, done *[]flashorder.Settlement) error {
	if len(*done) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	err := r.outbox.SettleEvents(ctx, *done)
	*done = (*done)[:0]
	return err
}

// deliver offers e to the sink until it takes it or e used up its attempts,
// and adds its settlement, at the next cursor, to done (settle writes them).
// Before it waits out a failed attempt it settles done, so that the events
// before e are marked sent while e backs off. It returns an error only when
// ctx ended or the outbox failed: then e stays pending, for the next drain.
func (r *Relay) deliver(ctx context.Context, e *flashorder.Event, cursor *int64, done *[]flashorder.Settlement) error {
	body, err := e.CloudEvent(r.opts.Source)
	attempts := e.Attempts
	for err == nil {
		attempts++
		err = r.sink.Publish(ctx, e, body)
		if err == nil {
			*cursor++
			*done = append(*done, flashorder.Settlement{Position: e.Position, State: flashorder.EventSent, Attempts: attempts, Cursor: *cursor})
			if r.opts.OnPublished != nil {
				r.opts.OnPublished()
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.opts.OnFailure != nil {
			r.opts.OnFailure()
		}
		r.opts.Logger.Warn("events relay: publish failed", "event", e.ID, "order", e.OrderID, "type", e.Type, "attempt", attempts, "err", err)
		if attempts >= r.opts.MaxAttempts {
			break
		}
		if err := r.settle(ctx, done); err != nil {
			return err
		}
		if err := r.outbox.RecordAttempts(ctx, e.Position, attempts); err != nil {
			return err
		}
		elect.Sleep(ctx, r.backoff(attempts))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = nil
	}
	// Used up its attempts, or cannot be encoded: a dead letter, replayable
	// through the admin API.
	*cursor++
	*done = append(*done, flashorder.Settlement{Position: e.Position, State: flashorder.EventDead, Attempts: attempts, Cursor: *cursor})
	r.opts.Logger.Error("events relay: dead letter", "event", e.ID, "order", e.OrderID, "type", e.Type, "attempts", attempts, "err", err)
	if r.opts.OnDead != nil {
		r.opts.OnDead()
	}
	return nil
}

// purge deletes the events sent before Retention, in bounded batches,
// keeping the one at cursor (the newest).
func (r *Relay) purge(ctx context.Context, cursor int64) error {
	before := time.Now().Add(-r.opts.Retention)
	for range purgeBatches {
		n, err := r.outbox.PurgeEvents(ctx, before, cursor, purgeBatch)
		if err != nil {
			return err
		}
		if n > 0 {
			r.opts.Logger.Debug("events relay: deleted sent events past retention", "count", n)
		}
		if n < purgeBatch {
			return nil
		}
	}
	return nil
}

// backoff returns the wait after the attempts-th failed attempt: MinBackoff
// doubled per attempt, at most MaxBackoff, at a random point of its upper
// half, so that relays do not retry in step.
func (r *Relay) backoff(attempts int) time.Duration {
	d := r.opts.MinBackoff
	for i := 1; i < attempts && d < r.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.opts.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}
