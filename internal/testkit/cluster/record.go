package cluster

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/flashorder/flashorder/loadtest"
)

// Event is one answer of a load run, as the Recorder keeps it.
type Event struct {
	Target     int
	Key        string
	Answer     loadtest.Answer
	Sent, Done time.Time
	Order      string
	// Replayed is whether a 201 was a replay of an earlier order under the
	// same Idempotency-Key.
	Replayed bool
}

// Recorder keeps every answer of a load run (loadtest.Config.OnAnswer), so
// that a fault test can tell which instance answered what and when, and time
// the outage a fault caused.
type Recorder struct {
	mu     sync.Mutex
	events []Event
	first  chan struct{}
	once   sync.Once
	start  time.Time
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{first: make(chan struct{})} }

// OnAnswer records one answer; pass it as loadtest.Config.OnAnswer.
func (r *Recorder) OnAnswer(e loadtest.AnswerEvent) {
	r.mu.Lock()
	r.events = append(r.events, Event{Target: e.Target, Key: e.Key, Answer: e.Answer, Sent: e.Sent, Done: e.Done, Order: e.Order, Replayed: e.Replayed})
	r.mu.Unlock()
	r.once.Do(func() {
		r.mu.Lock()
		r.start = e.Sent
		r.mu.Unlock()
		close(r.first)
	})
}

// WaitFirst waits for the first answer and returns when its request was sent:
// the start of the load, after the run's setup.
func (r *Recorder) WaitFirst(ctx context.Context) (time.Time, error) {
	select {
	case <-r.first:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.start, nil
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("cluster: no answer yet: %w", ctx.Err())
	}
}

// Events returns a copy of the events so far, ordered by completion.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	ev := append([]Event(nil), r.events...)
	r.mu.Unlock()
	sort.Slice(ev, func(i, j int) bool { return ev[i].Done.Before(ev[j].Done) })
	return ev
}

// Count returns how many events match keep.
func (r *Recorder) Count(keep func(Event) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if keep(e) {
			n++
		}
	}
	return n
}

// Answers counts the answers that match keep, by kind ("201", "503
// unavailable", "connection_refused").
func (r *Recorder) Answers(keep func(Event) bool) map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int64{}
	for _, e := range r.events {
		if keep == nil || keep(e) {
			m[e.Answer.String()]++
		}
	}
	return m
}

// FirstOrder returns when the first 201 arrived for a request sent at or
// after since, from target (-1: any target); ok is false when there is none.
func (r *Recorder) FirstOrder(since time.Time, target int) (at time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Answer.Status != 201 || e.Sent.Before(since) || (target >= 0 && e.Target != target) {
			continue
		}
		if !ok || e.Done.Before(at) {
			at, ok = e.Done, true
		}
	}
	return at, ok
}

// Latency returns the latency percentiles of the answers that match keep.
func (r *Recorder) Latency(keep func(Event) bool) loadtest.Percentiles {
	h := hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
	r.mu.Lock()
	for _, e := range r.events {
		if keep(e) {
			loadtest.RecordLatency(h, e.Done.Sub(e.Sent))
		}
	}
	r.mu.Unlock()
	return loadtest.PercentilesOf(h)
}

// Orders returns the distinct order ids answered with 201.
func (r *Recorder) Orders() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var ids []string
	for _, e := range r.events {
		if e.Answer.Status == 201 && e.Order != "" && !seen[e.Order] {
			seen[e.Order] = true
			ids = append(ids, e.Order)
		}
	}
	return ids
}

// LongestGap returns the longest time without a 201 from the last 201 before
// since to the end of the run (the last 201): the outage the clients saw. from
// and to are the 201s around it; ok is false without two such 201s.
func (r *Recorder) LongestGap(since time.Time) (from, to time.Time, ok bool) {
	r.mu.Lock()
	var done []time.Time
	for _, e := range r.events {
		if e.Answer.Status == 201 {
			done = append(done, e.Done)
		}
	}
	r.mu.Unlock()
	sort.Slice(done, func(i, j int) bool { return done[i].Before(done[j]) })
	start := sort.Search(len(done), func(i int) bool { return !done[i].Before(since) })
	if start > 0 {
		start-- // the last 201 before since
	}
	for i := start + 1; i < len(done); i++ {
		if d := done[i].Sub(done[i-1]); !ok || d > to.Sub(from) {
			from, to, ok = done[i-1], done[i], true
		}
	}
	return from, to, ok
}
