package flashorder

import (
	"context"
	"time"
)

// RateLimiter limits how often one user may place orders. Implementations share
// the budget across instances (Redis) or keep it per process (in-memory).
type RateLimiter interface {
	// Allow takes one request from userID's budget. When the budget is spent it
	// returns false and how long the user should wait before the next try. An
	// error means the limiter could not decide; callers let the request pass,
	// since the limit protects capacity and no invariant depends on it.
	Allow(ctx context.Context, userID string) (ok bool, retryAfter time.Duration, err error)
}

// SoldOutCache shares between orderd instances which SKUs were recently found
// sold out, so that an instance can answer sold_out without a database round
// trip. It is a hint with a bounded lifetime, never the source of truth: the
// database decides every order that the cache does not refuse.
type SoldOutCache interface {
	// SoldOut reports whether sku is marked sold out.
	SoldOut(ctx context.Context, sku string) (bool, error)
	// MarkSoldOut marks sku sold out for ttl.
	MarkSoldOut(ctx context.Context, sku string, ttl time.Duration) error
	// ClearSoldOut removes the mark on sku, for instance when stock is added.
	ClearSoldOut(ctx context.Context, sku string) error
}
