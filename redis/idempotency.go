package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder"
)

var _ flashorder.IdempotencyStore = (*IdempotencyStore)(nil)

// DefaultClaimTTL bounds how long an in-flight claim lives when its owner never
// completes or releases it (orderd killed mid-request). It is well above the
// longest an order request runs (the HTTP server's write timeout is 30 s).
const DefaultClaimTTL = 30 * time.Second

// claimScript claims KEYS[1] for fingerprint ARGV[1] and owner token ARGV[2]
// for ARGV[3] ms when the key is free, and returns false. When the key is held
// it changes nothing and returns the record: the fingerprint, the outcome
// (JSON; nil while in flight) and the status, body and location of an answer
// that a version before outcomes stored (nil otherwise).
var claimScript = goredis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'f', 'a', 's', 'b', 'l')
if r[1] then return r end
redis.call('HSET', KEYS[1], 'f', ARGV[1], 'o', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return false
`)

// completeScript stores the outcome (fingerprint ARGV[2], outcome JSON
// ARGV[3]) for ARGV[4] ms when KEYS[1] is claimed by owner ARGV[1], or is
// gone (the claim expired, or Redis lost it). It never overwrites another
// owner's claim or a stored outcome.
var completeScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then
	return 0
end
redis.call('HDEL', KEYS[1], 'o')
redis.call('HSET', KEYS[1], 'f', ARGV[2], 'a', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// releaseScript deletes KEYS[1] when it is an in-flight claim of owner ARGV[1].
var releaseScript = goredis.NewScript(`
if redis.call('HGET', KEYS[1], 'o') == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// IdempotencyStore is a flashorder.IdempotencyStore on Redis, shared by every
// orderd instance. Each key is one hash: the request's fingerprint, the owner
// token of an in-flight claim (which expires after ClaimTTL), and once done the
// outcome as JSON (kept for Retention). Claim, Complete and
// Release are one Lua script each, so they are atomic.
//
// Unless Strict is set, a Claim that Redis cannot answer in time is treated
// as granted: the request runs without the fast guard and the database's
// unique key on the idempotency key decides (flashorder.ErrIdempotencyKeyTaken
// and the lookup that replays the stored order). Orders keep flowing while
// Redis is down and no duplicate is ever created; what is lost meanwhile is
// request_in_progress between instances and the replay of stored refusals.
type IdempotencyStore struct {
	client goredis.UniversalClient

	// Prefix is prepended to every key; the default is "flashorder:idem:".
	Prefix string
	// Retention is how long a stored answer is kept; the default is
	// flashorder.DefaultIdempotencyRetention.
	Retention time.Duration
	// ClaimTTL bounds the life of an in-flight claim; the default is
	// DefaultClaimTTL.
	ClaimTTL time.Duration
	// Timeout bounds each Redis call; the default is DefaultTimeout.
	Timeout time.Duration
	// Strict makes Claim return Redis errors instead of granting the claim;
	// the default (false) falls back to the database guard.
	Strict bool
	// Logger receives the warnings of the fallback, at most one a second;
	// the default is slog.Default().
	Logger *slog.Logger

	// owned holds this process's in-flight claims, key -> *ownedClaim: the
	// owner token that Complete and Release present. Entries live from Claim
	// to Complete or Release, so their number is bounded by in-flight requests.
	owned     sync.Map
	fallbacks atomic.Int64
	lastWarn  atomic.Int64
}

type ownedClaim struct {
	token, fingerprint string
}

// NewIdempotencyStore returns a store on client with the default settings.
func NewIdempotencyStore(client goredis.UniversalClient) *IdempotencyStore {
	return &IdempotencyStore{
		client:    client,
		Prefix:    "flashorder:idem:",
		Retention: flashorder.DefaultIdempotencyRetention,
		ClaimTTL:  DefaultClaimTTL,
		Timeout:   DefaultTimeout,
		Logger:    slog.Default(),
	}
}

// Fallbacks returns how many claims were granted without Redis because it
// failed to answer.
func (s *IdempotencyStore) Fallbacks() int64 { return s.fallbacks.Load() }

// Claim implements flashorder.IdempotencyStore.
func (s *IdempotencyStore) Claim(ctx context.Context, key, fingerprint string) (*flashorder.IdempotencyRecord, error) {
	c := &ownedClaim{token: newToken(), fingerprint: fingerprint}
	if prev, loaded := s.owned.LoadOrStore(key, c); loaded {
		// A request in this process holds the key (or is claiming it).
		return &flashorder.IdempotencyRecord{Fingerprint: prev.(*ownedClaim).fingerprint}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	reply, err := claimScript.Run(ctx, s.client, []string{s.Prefix + key}, fingerprint, c.token, s.ClaimTTL.Milliseconds()).Slice()
	switch {
	case errors.Is(err, goredis.Nil):
		return nil, nil
	case err != nil:
		if s.Strict {
			s.owned.CompareAndDelete(key, c)
			return nil, fmt.Errorf("redis: claim idempotency key: %w", err)
		}
		// The claim may have been applied before the reply was lost: keep
		// the token so that Complete or Release can still act on it.
		s.fallbacks.Add(1)
		s.warn("redis: idempotency claim failed; relying on the database guard", err)
		return nil, nil
	}
	s.owned.CompareAndDelete(key, c)
	rec, err := parseRecord(reply)
	if err != nil {
		return nil, fmt.Errorf("redis: claim idempotency key: %w", err)
	}
	return rec, nil
}

// Complete implements flashorder.IdempotencyStore.
func (s *IdempotencyStore) Complete(ctx context.Context, key string, outcome flashorder.Outcome) error {
	c := s.takeOwned(key)
	a, err := json.Marshal(outcome)
	if err != nil {
		return fmt.Errorf("redis: store idempotent outcome: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	err = completeScript.Run(ctx, s.client, []string{s.Prefix + key},
		c.token, c.fingerprint, a, outcome.Retention(s.Retention, time.Now()).Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("redis: store idempotent outcome: %w", err)
	}
	return nil
}

// Release implements flashorder.IdempotencyStore.
func (s *IdempotencyStore) Release(ctx context.Context, key string) error {
	c := s.takeOwned(key)
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	if err := releaseScript.Run(ctx, s.client, []string{s.Prefix + key}, c.token).Err(); err != nil {
		return fmt.Errorf("redis: release idempotency claim: %w", err)
	}
	return nil
}

// takeOwned removes and returns this process's claim on key. Without one (a
// caller that did not claim), the zero claim matches no owner in Redis.
func (s *IdempotencyStore) takeOwned(key string) *ownedClaim {
	if v, ok := s.owned.LoadAndDelete(key); ok {
		return v.(*ownedClaim)
	}
	return &ownedClaim{}
}

func (s *IdempotencyStore) warn(msg string, err error) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(time.Second) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.Logger.Warn(msg, "err", err, "fallbacks", s.fallbacks.Load())
}

// parseRecord decodes the claim script's reply: the fingerprint, then the
// outcome, or nils while in flight.
func parseRecord(reply []any) (*flashorder.IdempotencyRecord, error) {
	if len(reply) != 5 {
		return nil, fmt.Errorf("unexpected reply of %d fields", len(reply))
	}
	fp, _ := reply[0].(string)
	rec := &flashorder.IdempotencyRecord{Fingerprint: fp}
	if a, ok := reply[1].(string); ok {
		rec.Outcome = new(flashorder.Outcome)
		if err := json.Unmarshal([]byte(a), rec.Outcome); err != nil {
			return nil, fmt.Errorf("bad stored outcome: %w", err)
		}
		return rec, nil
	}
	status, ok := reply[2].(string)
	if !ok {
		return rec, nil
	}
	body, _ := reply[3].(string)
	outcome, err := legacyOutcome(status, body)
	if err != nil {
		return nil, err
	}
	rec.Outcome = outcome
	return rec, nil
}

// legacyOutcome reads an answer stored by a version before outcomes: an HTTP
// status and body, the order for 201 and the API's error body otherwise.
func legacyOutcome(status, body string) (*flashorder.Outcome, error) {
	if status == "201" {
		o := new(flashorder.Order)
		if err := json.Unmarshal([]byte(body), o); err != nil {
			return nil, fmt.Errorf("bad stored order: %w", err)
		}
		return &flashorder.Outcome{Order: o}, nil
	}
	var e struct {
		Error flashorder.Refusal `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code == "" {
		return nil, fmt.Errorf("bad stored answer %s %q", status, body)
	}
	return &flashorder.Outcome{Refusal: &e.Error}, nil
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
