// Package keymutex is a set of FIFO mutexes, one per key, that exist only
// while someone holds or waits for them. The lock backends put it in front of
// their server, so that a thousand goroutines of one process that want one key
// wait here instead of making a thousand znodes, keys or polls: only the
// head of each key's queue talks to the server.
package keymutex

import (
	"context"
	"hash/maphash"
	"sync"
)

const shardCount = 64

// Map is a set of per-key mutexes. The zero value is not ready; use New.
// Keys are spread over shards, each with its own mutex, so that unrelated keys
// do not contend on one lock.
type Map struct {
	seed   maphash.Seed
	shards [shardCount]shard
}

type shard struct {
	mu sync.Mutex
	m  map[string]*entry
}

// entry is one key's mutex: a channel with room for one token. A goroutine
// holds the mutex while its token sits in the channel. Blocked senders queue
// in arrival order, and a receive hands the slot straight to the first of
// them, so the mutex is FIFO and nobody can barge in.
type entry struct {
	ch   chan struct{}
	refs int // holders and waiters; the entry goes away at 0
}

// New returns an empty Map.
func New() *Map {
	m := &Map{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*entry)
	}
	return m
}

// Lock waits until the caller holds key's mutex or ctx ends, in which case it
// returns ctx.Err() and holds nothing. The returned func releases the mutex;
// it must be called exactly once.
func (m *Map) Lock(ctx context.Context, key string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &m.shards[maphash.String(m.seed, key)%shardCount]
	s.mu.Lock()
	e := s.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		s.m[key] = e
	}
	e.refs++
	s.mu.Unlock()

	select {
	case e.ch <- struct{}{}:
		return func() {
			<-e.ch
			s.put(key, e)
		}, nil
	case <-ctx.Done():
		s.put(key, e)
		return nil, ctx.Err()
	}
}

// put drops a reference to e and forgets the key when nobody uses it.
func (s *shard) put(key string, e *entry) {
	s.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(s.m, key)
	}
	s.mu.Unlock()
}

// Len returns the number of keys held or waited for; for tests.
func (m *Map) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
