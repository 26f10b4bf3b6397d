package inmem

import (
	"container/list"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/flashorder/flashorder/queue"
)

var _ queue.Store = (*QueueStore)(nil)

// QueueStore is an in-process queue.Store for the embedded default. Each
// queue has its own mutex, so that queues never wait on each other; the map
// of queues has one more, held only to find or create a queue. Its state
// dies with the process.
type QueueStore struct {
	opts   queue.Options
	mu     sync.Mutex
	queues map[string]*memQueue
}

// NewQueueStore returns an empty store with opts (zero fields take the
// defaults of queue.Options).
func NewQueueStore(opts queue.Options) *QueueStore {
	return &QueueStore{opts: opts.WithDefaults(), queues: make(map[string]*memQueue)}
}

// Ticket states, as the Redis store spells them.
const (
	stWaiting  = 'w'
	stAdmitted = 'a'
	stUsed     = 'u'
	stIdle     = 'x' // left for not being polled
	stLapsed   = 'e' // admission expired unused
)

type memTicket struct {
	id, user string
	state    byte
	key      float64 // order in the pre-queue
	slot     int     // index in line; -1 in the pre-queue
	seenAt   time.Time
	expires  time.Time // of the admission
	number   int64     // of the admission
	seenEl   *list.Element
	admEl    *list.Element
}

type memQueue struct {
	id   string
	opts queue.Options

	mu      sync.Mutex
	start   time.Time
	started bool
	soldOut bool
	ended   bool
	used    int
	admits  int64 // admissions made, the last one's number
	waiting int
	users   map[string]*memTicket
	tickets map[string]*memTicket
	pre     []*memTicket
	// line holds the waiting tickets after the start in their order; a
	// ticket that leaves leaves nil, and live counts the tickets left so
	// that a position costs O(log n).
	line []*memTicket
	live fenwick
	head int
	seen list.List // waiting tickets, least recently seen first
	adm  list.List // outstanding admissions, soonest expiry first
}

func (s *QueueStore) queue(id string, create bool) *memQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[id]
	if q == nil && create {
		q = &memQueue{id: id, opts: s.opts, users: make(map[string]*memTicket), tickets: make(map[string]*memTicket)}
		s.queues[id] = q
	}
	return q
}

// lock finds ticketID's queue and locks it, having brought it to now.
func (s *QueueStore) lock(ticketID string, now time.Time) (*memQueue, *memTicket, error) {
	qid, err := queue.ParseTicketID(ticketID)
	if err != nil {
		return nil, nil, err
	}
	q := s.queue(qid, false)
	if q == nil {
		return nil, nil, queue.ErrUnknownTicket
	}
	q.mu.Lock()
	q.tidy(now)
	t := q.tickets[ticketID]
	if t == nil {
		q.mu.Unlock()
		return nil, nil, queue.ErrUnknownTicket
	}
	q.check(t, now)
	return q, t, nil
}

// check applies the timeouts to t itself: tidy stops at the first ticket
// still in time, and callers whose clocks differ a little may leave one
// behind it.
func (q *memQueue) check(t *memTicket, now time.Time) {
	switch {
	case t.state == stWaiting && now.Sub(t.seenAt) > q.opts.IdleTimeout:
		q.leaveLine(t)
		t.state = stIdle
	case t.state == stAdmitted && !now.Before(t.expires):
		q.adm.Remove(t.admEl)
		t.state = stLapsed
	}
}

// Join implements queue.Store.
func (s *QueueStore) Join(_ context.Context, queueID, userID string, startsAt, now time.Time) (queue.Ticket, error) {
	if err := queue.ValidateIDs(queueID, userID); err != nil {
		return queue.Ticket{}, err
	}
	q := s.queue(queueID, true)
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started {
		q.start = startsAt
	}
	q.tidy(now)
	if q.ended {
		return queue.Ticket{}, queue.ErrEnded
	}
	if t := q.users[userID]; t != nil {
		q.check(t, now)
	}
	if t := q.users[userID]; t != nil && t.state != stIdle && t.state != stLapsed {
		if t.state == stWaiting {
			q.touch(t, now)
		}
		return q.view(t), nil
	}
	t := &memTicket{id: queue.NewTicketID(queueID), user: userID, state: stWaiting, slot: -1, seenAt: now}
	if q.started {
		q.enqueue(t)
	} else {
		t.key = queue.PreQueueKey()
		q.pre = append(q.pre, t)
	}
	t.seenEl = q.seen.PushBack(t)
	q.waiting++
	q.users[userID] = t
	q.tickets[t.id] = t
	return q.view(t), nil
}

// Poll implements queue.Store.
func (s *QueueStore) Poll(_ context.Context, ticketID string, now time.Time) (queue.Ticket, error) {
	q, t, err := s.lock(ticketID, now)
	if err != nil {
		return queue.Ticket{}, err
	}
	defer q.mu.Unlock()
	if t.state == stWaiting {
		q.touch(t, now)
	}
	return q.view(t), nil
}

// Touch implements queue.Store.
func (s *QueueStore) Touch(_ context.Context, queueID string, touches []queue.Touch, now time.Time) ([]string, error) {
	if err := queue.ValidateQueueID(queueID); err != nil {
		return nil, err
	}
	var gone []string
	q := s.queue(queueID, false)
	if q == nil {
		for _, tc := range touches {
			gone = append(gone, tc.TicketID)
		}
		return gone, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	// The touches first: a poll answered from memory before now keeps its
	// ticket from the idle timeout that tidy applies at now.
	for _, tc := range touches {
		if t := q.tickets[tc.TicketID]; t != nil && t.state == stWaiting && !tc.At.After(now) {
			q.check(t, tc.At)
			if t.state == stWaiting {
				q.touch(t, tc.At)
			}
		}
	}
	q.tidy(now)
	for _, tc := range touches {
		t := q.tickets[tc.TicketID]
		if t != nil {
			q.check(t, now)
		}
		if t == nil || t.state != stWaiting {
			gone = append(gone, tc.TicketID)
		}
	}
	return gone, nil
}

// Admit implements queue.Store.
func (s *QueueStore) Admit(_ context.Context, queueID string, stockLeft int, factor float64, usedSeen int, now time.Time) ([]queue.Admission, error) {
	if err := queue.ValidateQueueID(queueID); err != nil {
		return nil, err
	}
	q := s.queue(queueID, false)
	if q == nil {
		return nil, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tidy(now)
	if usedSeen >= 0 && usedSeen != q.used {
		return nil, queue.ErrStale
	}
	if q.ended || !q.started {
		return nil, nil
	}
	if stockLeft > 0 {
		q.soldOut = false
	}
	var out []queue.Admission
	for n := queue.AdmitLimit(stockLeft, factor) - q.adm.Len(); n > 0 && q.head < len(q.line); q.head++ {
		t := q.line[q.head]
		if t == nil {
			continue
		}
		q.leaveLine(t)
		q.admits++
		t.state, t.expires, t.number = stAdmitted, now.Add(q.opts.AdmissionTTL), q.admits
		t.admEl = q.adm.PushBack(t)
		out = append(out, *q.view(t).Admission)
		n--
	}
	return out, nil
}

// Use implements queue.Store.
func (s *QueueStore) Use(_ context.Context, ticketID string, now time.Time) (queue.Admission, error) {
	q, t, err := s.lock(ticketID, now)
	if err != nil {
		return queue.Admission{}, err
	}
	defer q.mu.Unlock()
	switch t.state {
	case stAdmitted:
		q.adm.Remove(t.admEl)
		t.state = stUsed
		q.used++
		return *q.view(t).Admission, nil
	case stUsed:
		return queue.Admission{}, queue.ErrAdmissionUsed
	case stLapsed:
		return queue.Admission{}, queue.ErrAdmissionExpired
	default:
		return queue.Admission{}, queue.ErrNotAdmitted
	}
}

// SoldOut implements queue.Store.
func (s *QueueStore) SoldOut(_ context.Context, queueID string, now time.Time) error {
	return s.mark(queueID, func(q *memQueue) { q.soldOut = true })
}

// End implements queue.Store.
func (s *QueueStore) End(_ context.Context, queueID string, now time.Time) error {
	return s.mark(queueID, func(q *memQueue) { q.ended = true })
}

func (s *QueueStore) mark(queueID string, set func(*memQueue)) error {
	if err := queue.ValidateQueueID(queueID); err != nil {
		return err
	}
	q := s.queue(queueID, true)
	q.mu.Lock()
	defer q.mu.Unlock()
	set(q)
	return nil
}

// Stats implements queue.Store.
func (s *QueueStore) Stats(_ context.Context, queueID string, now time.Time) (queue.Stats, error) {
	if err := queue.ValidateQueueID(queueID); err != nil {
		return queue.Stats{}, err
	}
	q := s.queue(queueID, false)
	if q == nil {
		return queue.Stats{}, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tidy(now)
	return queue.Stats{Waiting: q.waiting, Outstanding: q.adm.Len(), Used: q.used, SoldOut: q.soldOut, Ended: q.ended}, nil
}

// tidy brings q to now: idle tickets leave, lapsed admissions free their
// place, and at the start the pre-queue goes, in its keys' order, before
// everyone who comes later.
func (q *memQueue) tidy(now time.Time) {
	for e := q.seen.Front(); e != nil; e = q.seen.Front() {
		t := e.Value.(*memTicket)
		if now.Sub(t.seenAt) <= q.opts.IdleTimeout {
			break
		}
		q.leaveLine(t)
		t.state = stIdle
	}
	for e := q.adm.Front(); e != nil; e = q.adm.Front() {
		t := e.Value.(*memTicket)
		if now.Before(t.expires) {
			break
		}
		q.adm.Remove(e)
		t.state = stLapsed
	}
	if !q.started && !now.Before(q.start) {
		q.started = true
		slices.SortFunc(q.pre, func(a, b *memTicket) int { return compareKeys(a.key, b.key) })
		for _, t := range q.pre {
			if t.state == stWaiting {
				q.enqueue(t)
			}
		}
		q.pre = nil
	}
}

func compareKeys(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (q *memQueue) enqueue(t *memTicket) {
	t.slot = len(q.line)
	q.line = append(q.line, t)
	q.live.grow(len(q.line), q.line)
	q.live.add(t.slot, 1)
}

// leaveLine takes a waiting ticket out of the line (or the pre-queue).
func (q *memQueue) leaveLine(t *memTicket) {
	q.seen.Remove(t.seenEl)
	q.waiting--
	if t.slot >= 0 {
		q.line[t.slot] = nil
		q.live.add(t.slot, -1)
	}
}

func (q *memQueue) touch(t *memTicket, now time.Time) {
	if now.After(t.seenAt) {
		t.seenAt = now
	}
	q.seen.MoveToBack(t.seenEl)
}

func (q *memQueue) view(t *memTicket) queue.Ticket {
	v := queue.Ticket{ID: t.id, QueueID: q.id, UserID: t.user}
	switch t.state {
	case stWaiting:
		switch {
		case q.ended:
			v.Status = queue.StatusEnded
		case q.soldOut:
			v.Status = queue.StatusSoldOut
		default:
			v.Status = queue.StatusWaiting
		}
		if t.slot < 0 {
			v.PreQueue = true
		} else {
			v.Position = q.live.sum(t.slot)
		}
	case stAdmitted, stUsed:
		v.Status = queue.StatusAdmitted
		v.Admission = &queue.Admission{TicketID: t.id, QueueID: q.id, UserID: t.user, ExpiresAt: t.expires, Used: t.state == stUsed, Number: t.number}
	default:
		v.Status = queue.StatusExpired
	}
	return v
}

// fenwick is a Fenwick (binary indexed) tree of counts per line slot.
type fenwick struct{ t []int }

// grow makes room for n slots, rebuilding from line when it must.
func (f *fenwick) grow(n int, line []*memTicket) {
	if n <= len(f.t) {
		return
	}
	f.t = make([]int, max(2*n, 64))
	for i, t := range line[:n-1] {
		if t != nil {
			f.add(i, 1)
		}
	}
}

func (f *fenwick) add(i, d int) {
	for i++; i <= len(f.t); i += i & -i {
		f.t[i-1] += d
	}
}

// sum returns the count of slots 0..i.
func (f *fenwick) sum(i int) int {
	s := 0
	for i++; i > 0; i -= i & -i {
		s += f.t[i-1]
	}
	return s
}
