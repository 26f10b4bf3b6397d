package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
)

var _ flashorder.RateLimiter = (*RateLimiter)(nil)

// RateLimiter is a flashorder.RateLimiter shared by every instance on one
// Redis: a GCRA limit per user (go-redis/redis_rate), one Lua script per
// request.
type RateLimiter struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit

	// Prefix is prepended to the user id in the limiter's key; the default is
	// "flashorder:rate:".
	Prefix string
	// Timeout bounds each Redis call; the default is DefaultTimeout.
	Timeout time.Duration
}

// NewRateLimiter returns a limiter that lets each user make rate requests per
// period, with bursts of up to burst requests.
func NewRateLimiter(client goredis.UniversalClient, rate int, period time.Duration, burst int) *RateLimiter {
	return &RateLimiter{
		limiter: redis_rate.NewLimiter(client),
		limit:   redis_rate.Limit{Rate: rate, Period: period, Burst: burst},
		Prefix:  "flashorder:rate:",
		Timeout: DefaultTimeout,
	}
}

// Allow implements flashorder.RateLimiter.
func (l *RateLimiter) Allow(ctx context.Context, userID string) (bool, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	res, err := l.limiter.Allow(ctx, l.Prefix+userID, l.limit)
	if err != nil {
		return false, 0, fmt.Errorf("redis: rate limit user %q: %w", userID, err)
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	return false, res.RetryAfter, nil
}
