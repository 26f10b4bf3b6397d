package flashorder

import (
	"context"
	"errors"
	"time"
)

// DefaultIdempotencyRetention is how long a stored outcome is kept.
const DefaultIdempotencyRetention = 24 * time.Hour

// IdempotencyStore remembers, per Idempotency-Key, which request claimed the key
// and, once it finished, how it ended. The database's unique key on stored
// orders is the final guard behind it: a store that forgets a key (restart,
// eviction) never causes a second order. checkout.Idempotent is its one user.
type IdempotencyStore interface {
	// Claim atomically claims key for a request with the given fingerprint.
	// When the key is free it records an in-flight claim and returns
	// (nil, nil); the caller must later Complete or Release it. When the key
	// is already claimed or done it changes nothing and returns the record.
	Claim(ctx context.Context, key, fingerprint string) (*IdempotencyRecord, error)
	// Complete stores the outcome for a key claimed by this caller.
	Complete(ctx context.Context, key string, outcome Outcome) error
	// Release drops the claim on key so that a retry can run again; used
	// when the request failed in a way that must not be replayed (5xx).
	Release(ctx context.Context, key string) error
}

// IdempotencyRecord is what an IdempotencyStore holds for a key.
type IdempotencyRecord struct {
	Fingerprint string
	// Outcome is nil while the first request is still in flight.
	Outcome *Outcome
}

// Outcome is how an order request under an Idempotency-Key ended, kept so
// that its retries end the same way: the order it placed, or the refusal it
// got (sold out, over the limit, an unknown product). Exactly one is set.
type Outcome struct {
	Order   *Order   `json:"order,omitempty"`
	Refusal *Refusal `json:"refusal,omitempty"`
}

// Refusal is a stored refusal: an error's code and client-safe message.
type Refusal struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// StartsAt is the not_started refusal's start time.
	StartsAt *time.Time `json:"starts_at,omitempty"`
}

// NewRefusal returns err's code, client-safe message and start time as a
// Refusal.
func NewRefusal(err error) *Refusal {
	r := &Refusal{Code: ErrorCode(err), Message: ErrorMessage(err)}
	var e *Error
	if errors.As(err, &e) && !e.StartsAt.IsZero() {
		t := e.StartsAt
		r.StartsAt = &t
	}
	return r
}

// Retention returns how long o is kept from now: retention, except for a
// not_started refusal, kept only until its sale starts (at least a
// millisecond), so that a retry with the same key after Retry-After runs
// again instead of replaying not_started for good.
func (o Outcome) Retention(retention time.Duration, now time.Time) time.Duration {
	if o.Refusal != nil && o.Refusal.StartsAt != nil {
		return min(retention, max(o.Refusal.StartsAt.Sub(now), time.Millisecond))
	}
	return retention
}

// Err returns the refusal as an *Error, or nil when o holds an order.
func (o Outcome) Err() error {
	if o.Refusal == nil {
		return nil
	}
	e := &Error{Code: o.Refusal.Code, Message: o.Refusal.Message}
	if o.Refusal.StartsAt != nil {
		e.StartsAt = *o.Refusal.StartsAt
	}
	return e
}
