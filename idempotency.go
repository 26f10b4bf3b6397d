package flashorder

import (
	"context"
	"time"
)

// DefaultIdempotencyRetention is how long a stored answer is kept.
const DefaultIdempotencyRetention = 24 * time.Hour

// IdempotencyStore remembers, per Idempotency-Key, which request claimed the key
// and, once it finished, the answer it got. The database's unique key on stored
// orders is the final guard behind it: a store that forgets a key (restart,
// eviction) never causes a second order.
type IdempotencyStore interface {
	// Claim atomically claims key for a request with the given fingerprint.
	// When the key is free it records an in-flight claim and returns
	// (nil, nil); the caller must later Complete or Release it. When the key
	// is already claimed or done it changes nothing and returns the record.
	Claim(ctx context.Context, key, fingerprint string) (*IdempotencyRecord, error)
	// Complete stores the final answer for a key claimed by this caller.
	Complete(ctx context.Context, key string, answer StoredAnswer) error
	// Release drops the claim on key so that a retry can run again; used
	// when the request failed in a way that must not be replayed (5xx).
	Release(ctx context.Context, key string) error
}

// IdempotencyRecord is what an IdempotencyStore holds for a key.
type IdempotencyRecord struct {
	Fingerprint string
	// Answer is nil while the first request is still in flight.
	Answer *StoredAnswer
}

// StoredAnswer is an HTTP answer kept for replay.
type StoredAnswer struct {
	Status   int    `json:"status"`
	Body     []byte `json:"body"`
	Location string `json:"location,omitempty"`
}
