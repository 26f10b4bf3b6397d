package inmem

import (
	"container/list"
	"context"
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/flashorder/flashorder"
)

var _ flashorder.RateLimiter = (*RateLimiter)(nil)

// DefaultRateLimitUsers is how many users a RateLimiter tracks by default.
const DefaultRateLimitUsers = 1 << 17

// RateLimiter is an in-process flashorder.RateLimiter: a token bucket
// (golang.org/x/time/rate) per user. The buckets live in shards, each with its
// own mutex and a least-recently-used list, so that memory stays bounded by
// the number of users given to NewRateLimiter. Evicting a user forgets their
// bucket, which then starts full again: the least recently seen users are the
// ones whose buckets are most likely full anyway.
type RateLimiter struct {
	limit  rate.Limit
	burst  int
	seed   maphash.Seed
	shards [shardCount]rateShard
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock
}

type rateShard struct {
	mu    sync.Mutex
	max   int
	users map[string]*list.Element
	lru   list.List // of *rateUser, most recent at the front
}

type rateUser struct {
	id      string
	limiter *rate.Limiter
}

// NewRateLimiter returns a limiter that lets each user make rate requests per
// period with bursts of up to burst, tracking at most maxUsers users
// (DefaultRateLimitUsers when maxUsers <= 0).
func NewRateLimiter(rateN int, period time.Duration, burst, maxUsers int) *RateLimiter {
	if maxUsers <= 0 {
		maxUsers = DefaultRateLimitUsers
	}
	perShard := max(1, maxUsers/shardCount)
	l := &RateLimiter{
		limit: rate.Limit(float64(rateN) / period.Seconds()),
		burst: burst,
		seed:  maphash.MakeSeed(),
		Now:   time.Now,
	}
	for i := range l.shards {
		l.shards[i].max = perShard
		l.shards[i].users = make(map[string]*list.Element)
	}
	return l
}

// Allow implements flashorder.RateLimiter.
func (l *RateLimiter) Allow(_ context.Context, userID string) (bool, time.Duration, error) {
	now := l.Now()
	sh := &l.shards[maphash.String(l.seed, userID)%shardCount]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var lim *rate.Limiter
	if e, ok := sh.users[userID]; ok {
		sh.lru.MoveToFront(e)
		lim = e.Value.(*rateUser).limiter
	} else {
		if sh.lru.Len() >= sh.max {
			oldest := sh.lru.Back()
			sh.lru.Remove(oldest)
			delete(sh.users, oldest.Value.(*rateUser).id)
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		sh.users[userID] = sh.lru.PushFront(&rateUser{id: userID, limiter: lim})
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second, nil
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, nil
	}
	return true, 0, nil
}

// Users returns how many users the limiter tracks now.
func (l *RateLimiter) Users() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += sh.lru.Len()
		sh.mu.Unlock()
	}
	return n
}
