// Package relay publishes the order events of the outbox (flashorder.Outbox)
// downstream: the Relay, elected through a flashorder.Locker like the expiry
// sweeper, so that one instance of all that share a database publishes; and
// the sinks it publishes to (Webhook, signed per the Standard Webhooks
// specification; NATS JetStream).
//
// Delivery is at least once and in per-order order: the relay takes pending
// events oldest first and publishes events of different orders concurrently
// (BatchPublisher, ConcurrentPublisher), but an order's next event only once
// the sink acknowledged the one before it, or that one used up its attempts
// and became a dead letter. A failed event backs off alone, holding back the
// later events of its order only. An event published just before a crash,
// and not yet marked sent, is published again by the next relay: consumers
// drop repeats by event id.
package relay

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
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
	// DefaultMaxBatch bounds a BatchPublisher's batches while a backlog
	// lasts (Options.MaxBatch).
	DefaultMaxBatch = 500
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
	// Batch is how many pending events one read takes, and how many a
	// BatchPublisher gets in one call; the default is DefaultBatch.
	Batch int
	// MaxBatch bounds the batches of a BatchPublisher while a backlog
	// lasts: each read that finds more pending events than it took doubles
	// the batch, up to MaxBatch, and one that empties the outbox brings it
	// back to Batch; so a backlog drains with fewer calls and fewer
	// commits, and a trickle keeps small batches and a short lag. The
	// default is DefaultMaxBatch (at least Batch); the most events in
	// flight is 4 batches.
	MaxBatch int
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
	// OnLag, when set, is called after each delivered event with the time
	// from the event's Time (about its commit: an order's creation is
	// timed as the request was taken) to the sink's acknowledgement.
	OnLag func(lag time.Duration)
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
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	opts.MaxBatch = max(opts.MaxBatch, opts.Batch)
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

// BatchPublisher is a sink that publishes several events in one call,
// pipelined (NATS: every message sent before the first acknowledgement is
// awaited). The relay gives it at most Options.Batch events at a time, never
// two of the same order, and settles only those it acknowledged.
type BatchPublisher interface {
	flashorder.EventPublisher
	// PublishBatch publishes evs, bodies[i] the CloudEvent of evs[i], and
	// returns one error per event: nil once the sink acknowledged it.
	PublishBatch(ctx context.Context, evs []*flashorder.Event, bodies [][]byte) []error
}

// ConcurrentPublisher is a sink whose Publish may run in several goroutines
// at once (Webhook): the relay keeps up to MaxInFlight events in flight, of
// different orders. A sink that is neither this nor a BatchPublisher gets one
// event at a time.
type ConcurrentPublisher interface {
	flashorder.EventPublisher
	MaxInFlight() int
}

// PendingExceptReader is an outbox that reads pending events leaving out
// some positions (gormdb.DB): the relay leaves out its events in flight,
// which a plain PendingEvents returns again, bodies and all, at every read
// while their acknowledgements are awaited.
type PendingExceptReader interface {
	// PendingEventsExcept is PendingEvents without the events at the
	// positions in except; limit counts the events returned.
	PendingEventsExcept(ctx context.Context, limit int, except []int64) ([]*flashorder.Event, error)
}

// batchesInFlight is how many PublishBatch calls a relay keeps in flight: while
// one waits for its acknowledgements, the relay settles the previous one and
// reads the next.
const batchesInFlight = 4

// unitResult is the outcome of one publish call: errs[i] of evs[i].
type unitResult struct {
	evs  []*flashorder.Event
	errs []error
}

// drain publishes pending events until ctx ends or the outbox fails; the
// cursor it gives settled events continues from the outbox's last.
//
// Events of different orders are published concurrently (a sink's
// PublishBatch, or up to its MaxInFlight single publishes); an order's
// events never: the next event of an order is offered only once the one
// before it was acknowledged or became a dead letter, and a failed event
// blocks the later events of its order, not those of other orders, while it
// backs off. Cursors are given in the order events settle, so an order's
// events have increasing cursors as well.
func (r *Relay) drain(ctx context.Context) error {
	cursor, err := r.outbox.LastCursor(ctx)
	if err != nil {
		return err
	}
	unitSize, maxUnits := 1, 1
	batcher, isBatcher := r.sink.(BatchPublisher)
	if isBatcher {
		unitSize, maxUnits = r.opts.Batch, batchesInFlight
	} else if c, ok := r.sink.(ConcurrentPublisher); ok {
		maxUnits = max(1, c.MaxInFlight())
	}
	exceptReader, readsExcept := r.outbox.(PendingExceptReader)
	var except []int64 // busy's positions, for exceptReader
	pubCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	results := make(chan unitResult, maxUnits)
	units := 0
	busy := map[int64]string{}         // positions in flight, and their orders
	held := map[int64]time.Time{}      // positions backing off after a failed attempt, until when
	var queue []*flashorder.Event      // read, ready, not yet offered
	var done []flashorder.Settlement   // settled at the next settle
	var failed []flashorder.Settlement // failed attempts to record (Attempts)

	// handle books a publish call's outcome.
	handle := func(u unitResult) {
		units--
		for i, e := range u.evs {
			// e stays busy until settled or its attempt recorded.
			err := u.errs[i]
			attempts := e.Attempts + 1
			if err == nil {
				delete(held, e.Position)
				if len(held) >= r.opts.Batch-1 {
					// The sink was taken as down (every slot of held
					// backing off) and took this retry: it is back, so
					// retry the others now rather than at their backoff.
					for pos := range held {
						held[pos] = time.Time{}
					}
				}
				cursor++
				done = append(done, flashorder.Settlement{Position: e.Position, State: flashorder.EventSent, Attempts: attempts, Cursor: cursor})
				if r.opts.OnPublished != nil {
					r.opts.OnPublished()
				}
				if r.opts.OnLag != nil {
					r.opts.OnLag(time.Since(e.Time))
				}
				continue
			}
			if pubCtx.Err() != nil {
				delete(busy, e.Position)
				continue // stopping: not an attempt; stays pending
			}
			if r.opts.OnFailure != nil {
				r.opts.OnFailure()
			}
			r.opts.Logger.Warn("events relay: publish failed", "event", e.ID, "order", e.OrderID, "type", e.Type, "attempt", attempts, "err", err)
			if attempts >= r.opts.MaxAttempts {
				delete(held, e.Position)
				cursor++
				done = append(done, r.dead(e, attempts, cursor, err))
				continue
			}
			held[e.Position] = time.Now().Add(r.backoff(attempts))
			failed = append(failed, flashorder.Settlement{Position: e.Position, Attempts: attempts})
		}
	}
	// settle writes done and failed down and frees their events.
	var settledAt time.Time
	settle := func(ctx context.Context) error {
		settledAt = time.Now()
		for _, s := range done {
			delete(busy, s.Position)
		}
		for _, s := range failed {
			delete(busy, s.Position)
		}
		return r.settle(ctx, &done, &failed)
	}
	// stop waits for the calls in flight, books what they published, and
	// settles it even as the relay stops, so that a stop republishes
	// nothing acknowledged.
	stop := func(err error) error {
		cancel()
		go func() { wg.Wait(); close(results) }()
		for u := range results {
			handle(u)
		}
		return errors.Join(err, settle(context.WithoutCancel(ctx)))
	}

	var backlogAt, purgeAt time.Time
	for {
		// Book every finished call; write them down (one transaction)
		// once a batch is complete, nothing is in flight, or settleEvery
		// passed. Until then they stay busy: no read offers them again,
		// nor the next event of their orders.
		for more := true; more; {
			select {
			case u := <-results:
				handle(u)
			default:
				more = false
			}
		}
		if ctx.Err() != nil {
			return stop(ctx.Err())
		}
		if n := len(done) + len(failed); n > 0 && (n >= max(r.opts.Batch, unitSize) || units == 0 || time.Since(settledAt) >= settleEvery) {
			if err := settle(ctx); err != nil {
				return stop(err)
			}
		}
		if r.opts.Retention > 0 && time.Since(purgeAt) >= purgeEvery {
			purgeAt = time.Now()
			if err := r.purge(ctx, cursor); err != nil {
				return stop(err)
			}
		}
		if r.opts.OnBacklog != nil && time.Since(backlogAt) >= backlogEvery {
			backlogAt = time.Now()
			rows, oldest, err := r.outbox.Backlog(ctx)
			if err != nil {
				return stop(err)
			}
			r.opts.OnBacklog(rows, oldest)
		}
		wait := r.opts.Poll
		if units < maxUnits && len(queue) == 0 {
			// Read enough to fill every free slot; what does not fit
			// waits in queue for the next free slot, without a read.
			want := max(r.opts.Batch, (maxUnits-units)*unitSize) + len(held)
			blocked := make(map[string]bool, len(busy)) // orders with an earlier event in flight or in this read
			var evs []*flashorder.Event
			var err error
			if readsExcept {
				except = except[:0]
				for pos, order := range busy {
					except = append(except, pos)
					blocked[order] = true
				}
				evs, err = exceptReader.PendingEventsExcept(ctx, want, except)
			} else {
				want += len(busy)
				evs, err = r.outbox.PendingEvents(ctx, want)
			}
			if err != nil {
				return stop(err)
			}
			if isBatcher {
				// A full read: a backlog; larger batches, up to MaxBatch.
				// Less: caught up; back to Batch.
				if len(evs) >= want {
					unitSize = min(unitSize*2, r.opts.MaxBatch)
				} else {
					unitSize = r.opts.Batch
				}
			}
			now := time.Now()
			nextDue := r.opts.Poll // until the first event backing off is due
			for _, e := range evs {
				if blocked[e.OrderID] {
					continue
				}
				blocked[e.OrderID] = true // one event of an order at a time
				if _, ok := busy[e.Position]; ok {
					continue
				}
				due, retry := held[e.Position]
				if retry && now.Before(due) {
					nextDue = min(nextDue, due.Sub(now))
					continue
				}
				if !retry && len(held) >= r.opts.Batch {
					// Batch events back off: the sink is taken as down; only
					// they are retried, and once one gets through, all.
					continue
				}
				queue = append(queue, e)
			}
			if len(queue) == 0 {
				wait = nextDue
			}
		}
		for units < maxUnits && len(queue) > 0 {
			var evs []*flashorder.Event
			var bodies [][]byte
			for len(queue) > 0 && len(evs) < unitSize {
				e := queue[0]
				if _, retry := held[e.Position]; !retry && len(held) >= r.opts.Batch {
					queue = nil // the sink went down since the read: read again
					break
				}
				queue = queue[1:]
				body, err := e.CloudEvent(r.opts.Source)
				if err != nil { // cannot be encoded: a dead letter at once
					busy[e.Position] = e.OrderID
					cursor++
					done = append(done, r.dead(e, e.Attempts, cursor, err))
					continue
				}
				busy[e.Position] = e.OrderID
				evs = append(evs, e)
				bodies = append(bodies, body)
			}
			if len(evs) == 0 {
				continue
			}
			units++
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs := make([]error, len(evs))
				if isBatcher {
					errs = batcher.PublishBatch(pubCtx, evs, bodies)
				} else {
					errs[0] = r.sink.Publish(pubCtx, evs[0], bodies[0])
				}
				results <- unitResult{evs: evs, errs: errs}
			}()
		}
		if units >= maxUnits {
			wait = r.opts.Poll * 100 // a call returns first
		}
		if len(done)+len(failed) > 0 {
			wait = min(wait, max(0, settleEvery-time.Since(settledAt)))
		}
		timer := time.NewTimer(wait)
		select {
		case u := <-results:
			handle(u)
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

// dead returns the settlement of e as a dead letter, replayable through the
// admin API, after attempts (it used them up, or cannot be encoded).
func (r *Relay) dead(e *flashorder.Event, attempts int, cursor int64, err error) flashorder.Settlement {
	r.opts.Logger.Error("events relay: dead letter", "event", e.ID, "order", e.OrderID, "type", e.Type, "attempts", attempts, "err", err)
	if r.opts.OnDead != nil {
		r.opts.OnDead()
	}
	return flashorder.Settlement{Position: e.Position, State: flashorder.EventDead, Attempts: attempts, Cursor: cursor}
}

// settleTimeout bounds the marking of a stopping relay's last deliveries.
const settleTimeout = 5 * time.Second

// settleEvery bounds how long delivered events wait to be marked sent while
// others are in flight: marks are written once per batch, when nothing is in
// flight, or after settleEvery.
const settleEvery = 20 * time.Millisecond

// settle marks the events in done as they ended, in one transaction (one
// commit for a batch of deliveries, not one per event), records the failed
// attempts, and empties both.
func (r *Relay) settle(ctx context.Context, done, failed *[]flashorder.Settlement) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if len(*done) > 0 {
		err := r.outbox.SettleEvents(ctx, *done)
		*done = (*done)[:0]
		if err != nil {
			return err
		}
	}
	for _, f := range *failed {
		if err := r.outbox.RecordAttempts(ctx, f.Position, f.Attempts); err != nil {
			*failed = (*failed)[:0]
			return err
		}
	}
	*failed = (*failed)[:0]
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
