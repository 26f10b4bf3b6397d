// Package inmem implements flashorder's interfaces in process memory, for the
// embedded default: a single orderd with no external services.
package inmem

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/flashorder/flashorder"
)

var _ flashorder.IdempotencyStore = (*IdempotencyStore)(nil)

const shardCount = 64

// DefaultIdempotencyMaxKeys is the default bound on the keys an in-process
// store holds: about 0.7 KB each, so some 180 MB at the bound.
const DefaultIdempotencyMaxKeys = 250_000

// IdempotencyStore is an in-process flashorder.IdempotencyStore. Keys are
// spread over shards, each with its own mutex, so that concurrent requests do
// not serialise on one lock. Outcomes expire after Retention; in-flight claims
// live until completed or released (their owner is this process). At most
// MaxKeys keys are held: past it, the oldest claims go first. A created order
// still replays after its key went, through the database (the server looks
// a taken key up there); a stored refusal (sold out, say) is then decided
// anew.
type IdempotencyStore struct {
	// Retention is how long a completed outcome is kept; the default is
	// flashorder.DefaultIdempotencyRetention.
	Retention time.Duration
	// MaxKeys bounds the keys held, spread evenly over the shards; the
	// default is DefaultIdempotencyMaxKeys, and 0 or less means no bound.
	// Set it before the first Claim.
	MaxKeys int
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock

	seed   maphash.Seed
	shards [shardCount]idemShard
}

type idemShard struct {
	mu      sync.Mutex
	entries map[string]*idemEntry
	// sweepAt is when the shard next drops expired entries.
	sweepAt time.Time
	// fifo lists the shard's claims oldest first, from head on; entries
	// dropped since (released, expired) stay in it until they reach the
	// head or the list is compacted. seq numbers the claims.
	fifo []idemKey
	head int
	seq  uint64
}

// idemKey is a claim in a shard's fifo: its key and its entry's seq, so that
// a key claimed again after it was dropped is not taken for the old claim.
type idemKey struct {
	key string
	seq uint64
}

type idemEntry struct {
	record  flashorder.IdempotencyRecord
	expires time.Time // zero while in flight
	seq     uint64
}

// NewIdempotencyStore returns an empty store with the default retention.
func NewIdempotencyStore() *IdempotencyStore {
	s := &IdempotencyStore{Retention: flashorder.DefaultIdempotencyRetention, MaxKeys: DefaultIdempotencyMaxKeys,
		Now: time.Now, seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].entries = make(map[string]*idemEntry)
	}
	return s
}

func (s *IdempotencyStore) shard(key string) *idemShard {
	return &s.shards[maphash.String(s.seed, key)%shardCount]
}

// Claim implements flashorder.IdempotencyStore.
func (s *IdempotencyStore) Claim(_ context.Context, key, fingerprint string) (*flashorder.IdempotencyRecord, error) {
	now := s.Now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(now, s.Retention)
	if e, ok := sh.entries[key]; ok && (e.expires.IsZero() || now.Before(e.expires)) {
		rec := e.record
		return &rec, nil
	}
	sh.seq++
	sh.entries[key] = &idemEntry{record: flashorder.IdempotencyRecord{Fingerprint: fingerprint}, seq: sh.seq}
	if s.MaxKeys > 0 {
		sh.fifo = append(sh.fifo, idemKey{key, sh.seq})
		sh.evict((s.MaxKeys + shardCount - 1) / shardCount)
	}
	return nil, nil
}

// evict drops the oldest claims until the shard holds at most limit keys,
// and compacts the fifo when most of it is dropped claims.
func (sh *idemShard) evict(limit int) {
	for len(sh.entries) > limit && sh.head < len(sh.fifo) {
		k := sh.fifo[sh.head]
		sh.fifo[sh.head] = idemKey{}
		sh.head++
		if e, ok := sh.entries[k.key]; ok && e.seq == k.seq {
			delete(sh.entries, k.key)
		}
	}
	if live := len(sh.fifo) - sh.head; sh.head > live || live > 2*len(sh.entries)+16 {
		kept := sh.fifo[:0]
		for _, k := range sh.fifo[sh.head:] {
			if e, ok := sh.entries[k.key]; ok && e.seq == k.seq {
				kept = append(kept, k)
			}
		}
		clear(sh.fifo[len(kept):])
		sh.fifo, sh.head = kept, 0
	}
}

// Complete implements flashorder.IdempotencyStore.
func (s *IdempotencyStore) Complete(_ context.Context, key string, outcome flashorder.Outcome) error {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.entries[key]; ok {
		e.record.Outcome = &outcome
		now := s.Now()
		e.expires = now.Add(outcome.Retention(s.Retention, now))
	}
	return nil
}

// Release implements flashorder.IdempotencyStore.
func (s *IdempotencyStore) Release(_ context.Context, key string) error {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.entries[key]; ok && e.record.Outcome == nil {
		delete(sh.entries, key)
	}
	return nil
}

// sweep drops expired outcomes, at most once per tenth of the retention, so
// that memory stays bounded by the outcomes of one retention period.
func (sh *idemShard) sweep(now time.Time, retention time.Duration) {
	if now.Before(sh.sweepAt) {
		return
	}
	sh.sweepAt = now.Add(retention / 10)
	for k, e := range sh.entries {
		if !e.expires.IsZero() && !now.Before(e.expires) {
			delete(sh.entries, k)
		}
	}
}
