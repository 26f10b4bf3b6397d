package redis

// This file is the Redis lock. The package's doc comment lives in doc.go.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/keymutex"
	"github.com/flashorder/flashorder/internal/lockcore"
)

var (
	_ flashorder.Locker = (*Locker)(nil)
	_ flashorder.Lock   = (*redisLock)(nil)
)

// DefaultLockTTL is the lock TTL when LockerOptions leaves it zero.
const DefaultLockTTL = 10 * time.Second

// DefaultLockPrefix is the key prefix when LockerOptions leaves it empty.
const DefaultLockPrefix = "flashorder:lock:"

// LockerOptions tunes NewLocker; zero fields take their defaults.
type LockerOptions struct {
	// TTL is how long a lock lives without renewal: a holder renews it every
	// TTL/3, and a dead holder's lock expires after at most TTL. The default
	// is DefaultLockTTL.
	TTL time.Duration
	// Prefix starts every key of the locker; the default is
	// DefaultLockPrefix. Key k is held in PREFIX{k} and its fencing counter
	// in PREFIX{k}:fence.
	Prefix string
	// MaxPoll bounds the pause between two attempts of a waiter; the default
	// is 20 ms. Waiters poll (from 1 ms, doubling, with jitter): Redis has no
	// queue of waiters, so the lock is not FIFO between processes.
	MaxPoll time.Duration
}

// Locker is a flashorder.Locker on a single Redis server: SET NX PX with a
// random value, renewed every TTL/3 while held, released by a
// compare-and-delete script.
//
// It is an efficiency lock, not a correctness one: a holder paused past the
// TTL (GC, swap, a partition) loses the lock without knowing, and Redis
// replication is asynchronous, so a failover can hand the lock out twice. The
// `lock` strategy is safe anyway because every write is fenced: the fencing
// token comes from a per-key counter that the acquiring script bumps in the
// same atomic step as the SET, so tokens follow the order in which Redis
// granted the lock, and the database refuses a token older than the last
// one it accepted. The counter never drops below the server's clock in
// microseconds, so tokens keep growing even when Redis lost its data.
//
// Within one process, waiters of a key queue in memory (FIFO) and only the
// head polls Redis.
type Locker struct {
	client  *goredis.Client
	ttl     time.Duration
	prefix  string
	maxPoll time.Duration
	keys    *keymutex.Map

	// ctx ends on Close.
	ctx    context.Context
	cancel context.CancelFunc
	// gate counts Lock calls and renewers, for Close.
	gate lockcore.Gate
}

// NewLocker returns a Locker on client. The caller keeps owning client:
// Close releases the locks, not the client.
func NewLocker(client *goredis.Client, opts LockerOptions) *Locker {
	if opts.TTL <= 0 {
		opts.TTL = DefaultLockTTL
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultLockPrefix
	}
	if opts.MaxPoll <= 0 {
		opts.MaxPoll = 20 * time.Millisecond
	}
	l := &Locker{client: client, ttl: opts.TTL, prefix: opts.Prefix, maxPoll: opts.MaxPoll, keys: keymutex.New()}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// lockAcquireScript sets the lock when it is free and returns the next
// fencing token, 0 when the lock is taken. The token is max(counter+1,
// server time in µs): it grows with every grant, and also after Redis lost
// the counter.
var lockAcquireScript = goredis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local token = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if token < now then
	token = now
end
redis.call('SET', KEYS[2], string.format('%.0f', token))
return token
`)

// lockRenewScript extends the lock while it still holds our value.
var lockRenewScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// lockReleaseScript deletes the lock while it still holds our value.
var lockReleaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// LockKey returns the Redis key that holds key's lock, for operators and
// tests.
func (l *Locker) LockKey(key string) string { return l.prefix + "{" + key + "}" }

func (l *Locker) fenceKey(key string) string { return l.prefix + "{" + key + "}:fence" }

// Lock implements flashorder.Locker.
func (l *Locker) Lock(ctx context.Context, key string) (flashorder.Lock, error) {
	if !l.gate.Enter() {
		return nil, flashorder.ErrLockerClosed
	}
	defer l.gate.Leave()
	ctx, stop := lockcore.MergeCancel(ctx, l.ctx)
	defer stop()
	release, err := l.keys.Lock(ctx, key)
	if err != nil {
		return nil, l.lockErr(key, err)
	}
	value := lockValue()
	ttlMS := l.ttl.Milliseconds()
	poll := time.Millisecond
	for {
		start := time.Now()
		token, err := lockAcquireScript.Run(ctx, l.client, []string{l.LockKey(key), l.fenceKey(key)}, value, ttlMS).Int64()
		if err != nil {
			// The SET may have happened: take it back (it would expire
			// after the TTL anyway).
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			lockReleaseScript.Run(rctx, l.client, []string{l.LockKey(key)}, value)
			rcancel()
			release()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, l.lockErr(key, err)
		}
		if token > 0 {
			k := &redisLock{Held: lockcore.NewHeld(key, token), l: l, value: value,
				done: make(chan struct{}), release: release, validUntil: start.Add(l.ttl)}
			l.gate.Add() // within this counted call
			go k.renew()
			return k, nil
		}
		t := time.NewTimer(poll/2 + mathrand.N(poll/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			release()
			return nil, l.lockErr(key, ctx.Err())
		}
		poll = min(2*poll, l.maxPoll)
	}
}

func (l *Locker) lockErr(key string, err error) error {
	return lockcore.LockErr("redis", key, err, l.ctx.Err() != nil, false)
}

// Ping checks that Redis answers, for readiness checks.
func (l *Locker) Ping(ctx context.Context) error {
	if err := l.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: ping: %w", err)
	}
	return nil
}

// Close implements flashorder.Locker: held locks are lost (and deleted from
// Redis), waiters return ErrLockerClosed. It does not close the client.
func (l *Locker) Close() error {
	l.gate.Close()
	l.cancel()
	l.gate.Wait()
	return nil
}

func lockValue() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type redisLock struct {
	*lockcore.Held
	l       *Locker
	value   string
	done    chan struct{} // closed by Unlock: stops renew
	release func()
	// validUntil is when the lock expires unless renewed: TTL after the
	// start of the last successful SET or renewal. Only renew uses it.
	validUntil time.Time
}

// renew extends the lock every TTL/3 until Unlock, and loses it when the key
// no longer holds our value or no renewal succeeded within the TTL.
func (k *redisLock) renew() {
	defer k.l.gate.Leave()
	l := k.l
	ttlMS := l.ttl.Milliseconds()
	every := l.ttl / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-k.done:
			return
		case <-l.ctx.Done():
			if k.lose() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				lockReleaseScript.Run(ctx, l.client, []string{l.LockKey(k.Key())}, k.value)
				cancel()
			}
			return
		case <-t.C:
		}
		if !time.Now().Before(k.validUntil) {
			k.lose()
			return
		}
		start := time.Now()
		ctx, cancel := context.WithDeadline(l.ctx, k.validUntil)
		ok, err := lockRenewScript.Run(ctx, l.client, []string{l.LockKey(k.Key())}, k.value, ttlMS).Int64()
		cancel()
		switch {
		case err == nil && ok == 1:
			k.validUntil = start.Add(l.ttl)
			t.Reset(every)
		case err == nil:
			k.lose() // expired and maybe taken: not ours any more
			return
		default:
			// Try again soon; the TTL check above ends the hope.
			t.Reset(min(every, max(time.Until(k.validUntil), 0), 50*time.Millisecond+every/10))
		}
	}
}

// lose reports whether it marked the lock lost.
func (k *redisLock) lose() bool {
	if !k.Lose() {
		return false
	}
	k.release()
	return true
}

// Unlock implements flashorder.Lock.
func (k *redisLock) Unlock(ctx context.Context) error {
	if err := k.Release(); err != nil {
		return err
	}
	close(k.done)
	defer k.release()
	n, err := lockReleaseScript.Run(ctx, k.l.client, []string{k.l.LockKey(k.Key())}, k.value).Int64()
	if err != nil {
		return fmt.Errorf("redis: unlock %q (it expires within %v): %w", k.Key(), k.l.ttl, err)
	}
	if n == 0 {
		// It expired before we released it: someone else may have had
		// it in between.
		return fmt.Errorf("redis: unlock %q: expired before the release: %w", k.Key(), flashorder.ErrLockNotHeld)
	}
	return nil
}
