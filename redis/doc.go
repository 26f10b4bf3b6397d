// Package redis implements flashorder's interfaces on Redis with
// github.com/redis/go-redis/v9: the idempotency store (IdempotencyStore), the
// per-user rate limiter shared by every instance (RateLimiter), the shared
// sold-out hint (SoldOutCache) and the distributed lock.
//
// Redis sits in front of the database to make the common cases fast; it never
// holds the only copy of anything that an invariant depends on. Every call
// runs under a short timeout, and a Redis that is down or slow degrades the
// fast paths (the database's unique keys stay the final guard against a
// duplicate order) instead of refusing orders.
package redis
