package queue

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// The crowd before a drop polls tickets that cannot move: a pre-queue
// ticket has no position until the start, when the pre-queue is shuffled.
// A room answers those polls from its memory, without the store: it
// remembers the pre-queue tickets it has seen (at their join or a poll the
// store answered), answers their polls while its admission loop, which
// reads the queue every round, vouches that nothing can have changed them,
// and sends the store, once a round, one Touch with the tickets polled and
// when, so that their places stay alive (the idle timeout) as if each poll
// had gone there. A ticket the store reports gone (it left idle before the Touch
// reached it, or the queue changed) is forgotten, so its next poll asks the
// store.

// preQueueMargin is how long before the start a room stops answering from
// memory: the pre-queue's order is drawn at the start, and every instance's
// clock must still read "before" when its answer says so.
const preQueueMargin = 2 * time.Second

// maxPreQueueCached bounds the pre-queue tickets a room remembers per
// queue (about 100 bytes each); beyond it polls go to the store.
const maxPreQueueCached = 1 << 20

// preTicket is a pre-queue ticket the room remembers.
type preTicket struct {
	id, user string
	// last is when (unix nanoseconds) the ticket was last polled here or
	// seen by the store: a ticket not polled for half the idle timeout
	// is asked of the store, which may have let it go.
	last atomic.Int64
	// pending is set while the ticket waits in a touch shard for the next
	// round's Touch.
	pending atomic.Bool
}

// preQueue is one queue's remembered pre-queue, and its admission loop's
// verdict on whether polls may be answered from it.
type preQueue struct {
	tickets sync.Map // ticket id -> *preTicket
	count   atomic.Int64
	// until is the unix nanoseconds until which the last admission
	// round vouched for answering from memory (0: not at all): the start
	// less preQueueMargin, and at most vouchFor ahead, so that a loop
	// that stalls stops the memory answers.
	until atomic.Int64
	// start is the queue's start, in unix nanoseconds, as the round read
	// it.
	start atomic.Int64
}

// touchShards spreads the tickets polled from memory over mutexes, so that
// the crowd's polls never meet at one.
const touchShards = 64

// touchShard holds tickets polled from memory since the last round.
type touchShard struct {
	mu  sync.Mutex
	ids map[string][]*preTicket // queue id -> tickets
	_   [40]byte                // keep shards on separate cache lines
}

// preQueues are a room's remembered pre-queues, with the tickets polled
// from memory that the next round must Touch.
type preQueues struct {
	seed   maphash.Seed
	fresh  time.Duration // half the idle timeout
	shards [touchShards]touchShard
}

// newPreQueues returns the pre-queues of a room whose store lets tickets
// go after idle.
func newPreQueues(idle time.Duration) *preQueues {
	return &preQueues{seed: maphash.MakeSeed(), fresh: idle / 2}
}

// remember records a pre-queue ticket of aq that the store answered at now
// (a join or a poll).
func (pq *preQueues) remember(aq *activeQueue, t Ticket, now time.Time) {
	if aq == nil || t.Status != StatusWaiting || !t.PreQueue {
		return
	}
	q := aq.pre.Load()
	if v, ok := q.tickets.Load(t.ID); ok {
		v.(*preTicket).last.Store(now.UnixNano())
		return
	}
	if q.count.Load() >= maxPreQueueCached {
		return
	}
	pt := &preTicket{id: t.ID, user: t.UserID}
	pt.last.Store(now.UnixNano())
	if _, loaded := q.tickets.LoadOrStore(t.ID, pt); !loaded {
		q.count.Add(1)
	}
}

// poll answers a poll of ticketID of aq at now from memory: the ticket and
// the start, and false when it must go to the store.
func (pq *preQueues) poll(aq *activeQueue, ticketID string, now time.Time) (Ticket, time.Time, bool) {
	q := aq.pre.Load()
	if now.UnixNano() >= q.until.Load() {
		return Ticket{}, time.Time{}, false
	}
	v, ok := q.tickets.Load(ticketID)
	if !ok {
		return Ticket{}, time.Time{}, false
	}
	pt := v.(*preTicket)
	if now.UnixNano()-pt.last.Load() > int64(pq.fresh) {
		return Ticket{}, time.Time{}, false
	}
	pt.last.Store(now.UnixNano())
	if pt.pending.CompareAndSwap(false, true) {
		sh := &pq.shards[maphash.String(pq.seed, ticketID)%touchShards]
		sh.mu.Lock()
		if sh.ids == nil {
			sh.ids = make(map[string][]*preTicket)
		}
		sh.ids[aq.id] = append(sh.ids[aq.id], pt)
		sh.mu.Unlock()
	}
	t := Ticket{ID: pt.id, QueueID: aq.id, UserID: pt.user, Status: StatusWaiting, PreQueue: true}
	return t, time.Unix(0, q.start.Load()).UTC(), true
}

// unsent returns the touch of ticketID of aq that a poll answered from
// memory left for the next round, if any: a poll the store answers
// meanwhile must send it first, or the store, not having heard of that
// poll, might let the ticket go.
func (pq *preQueues) unsent(aq *activeQueue, ticketID string) (Touch, bool) {
	v, ok := aq.pre.Load().tickets.Load(ticketID)
	if !ok || !v.(*preTicket).pending.Load() {
		return Touch{}, false
	}
	pt := v.(*preTicket)
	return Touch{TicketID: pt.id, At: time.Unix(0, pt.last.Load())}, true
}

// vouchFor is how long an admission round's verdict holds: two rounds, and
// at least a second, so that rounds slowed by a loaded machine do not send
// the crowd's polls to the store just when it is busiest. A queue ended (by
// an admin or another instance's round) reads ended from memory answers at
// most this late.
func vouchFor(interval time.Duration) time.Duration { return max(2*interval, time.Second) }

// vouch is the admission round's verdict on aq at now: polls may be
// answered from memory until the start (less the margin) or vouchFor from
// now, whichever is first, when the queue is neither sold out nor ended and
// starts at start (nil: no start, never); otherwise the queue's remembered
// tickets are dropped.
func (pq *preQueues) vouch(aq *activeQueue, st Stats, start *time.Time, interval time.Duration, now time.Time) {
	q := aq.pre.Load()
	if st.SoldOut || st.Ended || start == nil || !now.Before(start.Add(-preQueueMargin)) {
		q.until.Store(0)
		if q.count.Load() > 0 {
			aq.pre.Store(new(preQueue)) // the start is near: nobody polls from memory again
		}
		return
	}
	until := start.Add(-preQueueMargin)
	if soon := now.Add(vouchFor(interval)); soon.Before(until) {
		until = soon
	}
	q.start.Store(start.UnixNano())
	q.until.Store(until.UnixNano())
}

// touch sends the store the tickets of every queue polled from memory since
// the last call, at now, and forgets those it reports gone.
func (pq *preQueues) touch(ctx context.Context, r *Room, now time.Time) {
	batch := map[string][]*preTicket{}
	for i := range pq.shards {
		sh := &pq.shards[i]
		sh.mu.Lock()
		for qid, ids := range sh.ids {
			batch[qid] = append(batch[qid], ids...)
		}
		clear(sh.ids)
		sh.mu.Unlock()
	}
	for qid, pts := range batch {
		touches := make([]Touch, len(pts))
		for i, pt := range pts {
			pt.pending.Store(false)
			touches[i] = Touch{TicketID: pt.id, At: time.Unix(0, pt.last.Load())}
		}
		gone, err := r.store.Touch(ctx, qid, touches, now)
		v, _ := r.active.Load(qid)
		aq, _ := v.(*activeQueue)
		if err != nil {
			// The store did not answer: the places are not known to be
			// alive, so nobody is answered from memory until a store poll
			// remembers them again.
			r.opts.Logger.Warn("waiting room: touch of polled tickets failed", "queue", qid, "tickets", len(touches), "err", err)
			if aq != nil {
				aq.pre.Store(new(preQueue))
			}
			continue
		}
		if aq == nil {
			continue
		}
		q := aq.pre.Load()
		for _, id := range gone {
			if _, ok := q.tickets.LoadAndDelete(id); ok {
				q.count.Add(-1)
			}
		}
	}
}
