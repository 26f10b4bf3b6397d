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

// IdempotencyStore is an in-process flashorder.IdempotencyStore. Keys are
// spread over shards, each with its own mutex, so that concurrent requests do
// not serialise on one lock. Answers expire after Retention; in-flight claims
// live until completed or released (their owner is this process).
type IdempotencyStore struct {
	// Retention is how long a completed answer is kept; the default is
	// flashorder.DefaultIdempotencyRetention.
	Retention time.Duration
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
}

type idemEntry struct {
	record  flashorder.IdempotencyRecord
	expires time.Time // zero while in flight
}

// NewIdempotencyStore returns an empty store with the default retention.
func NewIdempotencyStore() *IdempotencyStore {
	s := &IdempotencyStore{Retention: flashorder.DefaultIdempotencyRetention, Now: time.Now, seed: maphash.MakeSeed()}
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
	sh.entries[key] = &idemEntry{record: flashorder.IdempotencyRecord{Fingerprint: fingerprint}}
	return nil, nil
}

// Complete implements flashorder.IdempotencyStore.
func (s *IdempotencyStore) Complete(_ context.Context, key string, answer flashorder.StoredAnswer) error {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.entries[key]; ok {
		e.record.Answer = &answer
		e.expires = s.Now().Add(s.Retention)
	}
	return nil
}

// Release implements flashorder.IdempotencyStore.
func (s *IdempotencyStore) Release(_ context.Context, key string) error {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.entries[key]; ok && e.record.Answer == nil {
		delete(sh.entries, key)
	}
	return nil
}

// sweep drops expired answers, at most once per tenth of the retention, so
// that memory stays bounded by the answers of one retention period.
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
