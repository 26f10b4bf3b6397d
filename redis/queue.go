package redis

import (
	"context"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashorder/flashorder/queue"
)

var _ queue.Store = (*QueueStore)(nil)

// QueueStore is a queue.Store on Redis, shared by every instance: per queue,
// a sorted set of the line (pre-queue tickets scored by their random key in
// [0, 1), later arrivals by an arrival counter from 1 on, so the pre-queue
// goes first in shuffled order), a sorted set of waiting tickets by last
// poll, one of outstanding admissions by expiry, a hash of tickets, a hash
// of users' tickets and a hash of counters and marks. Every step is one Lua
// script, so each operation on a queue is atomic; all of a queue's keys
// carry the hash tag {q:<id>}, which keeps them on one Redis Cluster slot.
type QueueStore struct {
	client goredis.UniversalClient
	opts   queue.Options
	// batcher sends concurrent callers' scripts in pipelines; made at the
	// first call, with Timeout as it is then.
	batcher   *scriptBatcher
	batchOnce sync.Once

	// Prefix is prepended to every key; the default is "flashorder:". It
	// must not contain "{".
	Prefix string
	// Timeout bounds each Redis call; the default is DefaultQueueTimeout.
	Timeout time.Duration
	// Retention is how long a queue's keys outlive its last join,
	// admission, use or mark; the default is DefaultQueueRetention.
	Retention time.Duration
}

// DefaultQueueTimeout is the default of QueueStore.Timeout: longer than the
// order path's DefaultTimeout, because a join or a poll has no fallback to
// the database, and a crowd's burst may queue for a moment behind the
// pipelines in flight; a Redis that is down refuses at once all the same.
const DefaultQueueTimeout = time.Second

// DefaultQueueRetention is the default of QueueStore.Retention: a day, far
// beyond any sale, so that a forgotten queue's keys still go.
const DefaultQueueRetention = 24 * time.Hour

// NewQueueStore returns a store on client with opts (zero fields take the
// defaults of queue.Options).
func NewQueueStore(client goredis.UniversalClient, opts queue.Options) *QueueStore {
	return &QueueStore{client: client, opts: opts.WithDefaults(), Prefix: "flashorder:", Timeout: DefaultQueueTimeout, Retention: DefaultQueueRetention}
}

// QueueKeys returns the keys of queueID, in the order the scripts take them.
func (s *QueueStore) QueueKeys(queueID string) []string {
	p := s.Prefix + "{q:" + queueID + "}:"
	return []string{p + "meta", p + "line", p + "seen", p + "adm", p + "users", p + "tickets"}
}

// queueHelpers is what every script starts with: its keys and arguments,
// and the helpers, tidy among them, which brings the queue to now (idle
// tickets leave, lapsed admissions free their place). A ticket's record is "state|admission expiry|user",
// followed by "|admission number" once admitted (a record without it reads
// as never admitted, so records written before numbers existed still
// parse); states are w(aiting), a(dmitted), u(sed), x (left idle), e
// (admission expired).
const queueHelpers = `
local meta, line, seen, adm, users, tickets = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now, idle, retention = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

-- keep makes the queue's keys live for the retention from now; when the
-- meta key, refreshed with the others, still has most of it, they all do
-- (a join's crowd refreshes them once a minute, not six times a join).
local function keep()
  if redis.call('PTTL', meta) > retention - 60000 then return end
  for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, retention) end
end

local function record(t)
  local rec = redis.call('HGET', tickets, t)
  if not rec then return nil end
  local st, exp, user, num = string.match(rec, '^(%a)|(%-?%d+)|([^|]*)|?(%d*)$')
  return st, tonumber(exp), user, tonumber(num) or 0
end

-- setstate sets t's state and admission expiry; num, when given, is its
-- admission's number (else the one it has is kept).
local function setstate(t, st, exp, num)
  local _, _, user, old = record(t)
  num = num or old
  local rec = st .. '|' .. exp .. '|' .. user
  if num > 0 then rec = rec .. '|' .. num end
  redis.call('HSET', tickets, t, rec)
end

local function leave(t)
  redis.call('ZREM', line, t)
  redis.call('ZREM', seen, t)
end

local function goidle(t)
  leave(t)
  setstate(t, 'x', 0)
end

-- lapse ends t's unused admission: its place goes back under the bound.
local function lapse(t)
  redis.call('ZREM', adm, t)
  setstate(t, 'e', 0)
end

local function tidy()
  for _, t in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', '(' .. (now - idle), 'LIMIT', 0, 1000)) do
    goidle(t)
  end
  for _, t in ipairs(redis.call('ZRANGEBYSCORE', adm, '-inf', now, 'LIMIT', 0, 1000)) do
    lapse(t)
  end
end

local function started(setstart)
  if redis.call('HGET', meta, 'started') == '1' then return true end
  if setstart then redis.call('HSET', meta, 'start', setstart) end
  local start = tonumber(redis.call('HGET', meta, 'start') or '')
  if start and now >= start then
    redis.call('HSET', meta, 'started', '1')
    return true
  end
  return false
end

-- timeouts applies t's own timeouts, given its state st, its admission
-- expiry exp and, when it waits, its idle clock last; it returns t's state
-- after them.
local function timeouts(t, st, exp, last)
  if st == 'w' and now - last > idle then
    goidle(t)
    return 'x'
  elseif st == 'a' and exp <= now then
    lapse(t)
    return 'e'
  end
  return st
end

-- check applies the timeouts to t itself, beyond the batches of tidy.
local function check(t)
  local st, exp = record(t)
  local last
  if st == 'w' then last = tonumber(redis.call('ZSCORE', seen, t)) end
  timeouts(t, st, exp, last)
end

local function touch(t)
  local last = tonumber(redis.call('ZSCORE', seen, t))
  if last and now > last then redis.call('ZADD', seen, now, t) end
end

-- view returns {id, status, position, prequeue, expiry, user, used,
-- admission number}.
local function view(t)
  local st, exp, user, num = record(t)
  if st == 'w' then
    local status = 'waiting'
    if redis.call('HGET', meta, 'ended') == '1' then
      status = 'ended'
    elseif redis.call('HGET', meta, 'soldout') == '1' then
      status = 'sold_out'
    end
    if redis.call('HGET', meta, 'started') == '1' then
      return {t, status, redis.call('ZRANK', line, t) + 1, 0, 0, user, 0, 0}
    end
    return {t, status, 0, 1, 0, user, 0, 0}
  elseif st == 'a' or st == 'u' then
    local used = 0
    if st == 'u' then used = 1 end
    return {t, 'admitted', 0, 0, exp, user, used, num}
  end
  return {t, 'expired', 0, 0, 0, user, 0, 0}
end
`

// queuePrelude is queueHelpers and tidy: the start of every script but
// Touch's.
const queuePrelude = queueHelpers + "tidy()\n"

// ARGV: now, idle, retention, start, user, new ticket id, pre-queue key.
var queueJoin = goredis.NewScript(queuePrelude + `
if redis.call('HGET', meta, 'ended') == '1' then return {'', 'ended'} end
local isstarted = started(ARGV[4])
local user = ARGV[5]
local t = redis.call('HGET', users, user)
if t then
  check(t)
  local st = record(t)
  if st == 'w' then touch(t) end
  if st ~= 'x' and st ~= 'e' then return view(t) end
end
t = ARGV[6]
local score = tonumber(ARGV[7])
if isstarted then score = redis.call('HINCRBY', meta, 'seq', 1) end
redis.call('ZADD', line, score, t)
redis.call('ZADD', seen, now, t)
redis.call('HSET', tickets, t, 'w|0|' .. user)
redis.call('HSET', users, user, t)
keep()
return view(t)
`)

// ARGV: now, idle, retention, ticket id.
var queuePoll = goredis.NewScript(queuePrelude + `
started(nil)
local t = ARGV[4]
if not record(t) then return {'', 'unknown'} end
check(t)
if record(t) == 'w' then touch(t) end
return view(t)
`)

// ARGV: now, idle, retention, then ticket id and poll time pairs. Returns
// the ids of those that are not waiting. Each ticket costs one read of its
// record and of its idle clock, and a write when the poll moves the clock:
// a poll answered from memory before now keeps its ticket from the idle
// timeout at now, and the ticket's own timeouts are applied to it (check's
// timeouts, with what was read) before it is judged gone; tidy runs last,
// for the others.
// This script runs once a round for the polls a room answered from memory,
// so its cost per ticket is what those polls cost Redis.
var queueTouch = goredis.NewScript(queueHelpers + `
local gone = {}
for i = 4, #ARGV, 2 do
  local t, at = ARGV[i], tonumber(ARGV[i + 1])
  local st, exp = record(t)
  local last
  if st == 'w' then
    last = tonumber(redis.call('ZSCORE', seen, t))
    if last and at <= now and at > last and at - last <= idle then
      redis.call('ZADD', seen, at, t)
      last = at
    end
  end
  if timeouts(t, st, exp, last) ~= 'w' then table.insert(gone, t) end
end
tidy()
return gone
`)

// ARGV: now, idle, retention, admission TTL, limit, stock left > 0 (1 or
// 0), used seen (-1: not checked). Returns ticket id, user, admission
// number, ... of the tickets admitted, or {'stale'}.
var queueAdmit = goredis.NewScript(queuePrelude + `
local usedseen = tonumber(ARGV[7])
if usedseen >= 0 and tonumber(redis.call('HGET', meta, 'used') or '0') ~= usedseen then return {'stale'} end
if redis.call('HGET', meta, 'ended') == '1' or not started(nil) then return {} end
if ARGV[6] == '1' then redis.call('HSET', meta, 'soldout', '0') end
local n = tonumber(ARGV[5]) - redis.call('ZCARD', adm)
local exp = now + tonumber(ARGV[4])
local out = {}
while n > 0 do
  local first = redis.call('ZRANGE', line, 0, 0)
  if #first == 0 then break end
  local t = first[1]
  local last = tonumber(redis.call('ZSCORE', seen, t))
  if now - last > idle then
    goidle(t)
  else
    leave(t)
    redis.call('ZADD', adm, exp, t)
    local num = redis.call('HINCRBY', meta, 'admits', 1)
    setstate(t, 'a', exp, num)
    local _, _, user = record(t)
    table.insert(out, t)
    table.insert(out, user)
    table.insert(out, num)
    n = n - 1
  end
end
if #out > 0 then keep() end
return out
`)

// ARGV: now, idle, retention, ticket id.
var queueUse = goredis.NewScript(queuePrelude + `
local t = ARGV[4]
if not record(t) then return {'unknown'} end
check(t)
local st, exp, user, num = record(t)
if st == 'a' then
  redis.call('ZREM', adm, t)
  setstate(t, 'u', exp)
  redis.call('HINCRBY', meta, 'used', 1)
  keep()
  return {'ok', exp, user, num}
elseif st == 'u' then
  return {'used'}
elseif st == 'e' then
  return {'expired'}
end
return {'not_admitted'}
`)

// ARGV: now, idle, retention.
var queueStats = goredis.NewScript(queuePrelude + `
started(nil)
local m = redis.call('HMGET', meta, 'used', 'soldout', 'ended')
return {redis.call('ZCARD', line), redis.call('ZCARD', adm), tonumber(m[1] or '0'), m[2] or '0', m[3] or '0'}
`)

func (s *QueueStore) run(ctx context.Context, script *goredis.Script, queueID string, args ...any) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	s.batchOnce.Do(func() { s.batcher = newScriptBatcher(s.client, s.Timeout) })
	res, err := s.batcher.run(ctx, script, s.QueueKeys(queueID), args...)
	if err != nil {
		return nil, fmt.Errorf("redis: queue %q: %w", queueID, err)
	}
	return res, nil
}

// runTicket runs a script that takes a ticket id on the ticket's queue.
func (s *QueueStore) runTicket(ctx context.Context, script *goredis.Script, ticketID string, now time.Time) (string, []any, error) {
	queueID, err := queue.ParseTicketID(ticketID)
	if err != nil {
		return "", nil, err
	}
	v, err := s.run(ctx, script, queueID, append(s.base(now), ticketID)...)
	return queueID, v, err
}

func (s *QueueStore) base(now time.Time) []any {
	return []any{now.UnixMilli(), s.opts.IdleTimeout.Milliseconds(), s.Retention.Milliseconds()}
}

// ticket turns a view (see the scripts) into a queue.Ticket.
func ticket(queueID string, v []any) (queue.Ticket, error) {
	if len(v) != 8 {
		return queue.Ticket{}, fmt.Errorf("redis: queue %q: unexpected answer %v", queueID, v)
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	num := func(i int) int64 { n, _ := v[i].(int64); return n }
	t := queue.Ticket{ID: str(0), QueueID: queueID, UserID: str(5), Status: queue.Status(str(1)), Position: int(num(2)), PreQueue: num(3) == 1}
	if t.Status == queue.StatusAdmitted {
		t.Admission = &queue.Admission{TicketID: t.ID, QueueID: queueID, UserID: t.UserID,
			ExpiresAt: time.UnixMilli(num(4)).UTC(), Used: num(6) == 1, Number: num(7)}
	}
	return t, nil
}

// Join implements queue.Store.
func (s *QueueStore) Join(ctx context.Context, queueID, userID string, startsAt, now time.Time) (queue.Ticket, error) {
	if err := queue.ValidateIDs(queueID, userID); err != nil {
		return queue.Ticket{}, err
	}
	args := append(s.base(now), startsAt.UnixMilli(), userID, queue.NewTicketID(queueID), queue.PreQueueKey())
	v, err := s.run(ctx, queueJoin, queueID, args...)
	if err != nil {
		return queue.Ticket{}, err
	}
	if len(v) == 2 {
		return queue.Ticket{}, queue.ErrEnded
	}
	return ticket(queueID, v)
}

// Poll implements queue.Store.
func (s *QueueStore) Poll(ctx context.Context, ticketID string, now time.Time) (queue.Ticket, error) {
	queueID, v, err := s.runTicket(ctx, queuePoll, ticketID, now)
	if err != nil {
		return queue.Ticket{}, err
	}
	if len(v) == 2 {
		return queue.Ticket{}, queue.ErrUnknownTicket
	}
	return ticket(queueID, v)
}

// Touch implements queue.Store: one script per touchBatch tickets.
func (s *QueueStore) Touch(ctx context.Context, queueID string, touches []queue.Touch, now time.Time) ([]string, error) {
	if err := queue.ValidateQueueID(queueID); err != nil {
		return nil, err
	}
	var gone []string
	for len(touches) > 0 {
		n := min(len(touches), touchBatch)
		args := s.base(now)
		for _, tc := range touches[:n] {
			args = append(args, tc.TicketID, tc.At.UnixMilli())
		}
		v, err := s.run(ctx, queueTouch, queueID, args...)
		if err != nil {
			return gone, err
		}
		for _, x := range v {
			if id, ok := x.(string); ok {
				gone = append(gone, id)
			}
		}
		touches = touches[n:]
	}
	return gone, nil
}

// touchBatch bounds the tickets of one Touch script, so that a room's
// backlog of polls never holds Redis for long.
const touchBatch = 500

// Admit implements queue.Store.
func (s *QueueStore) Admit(ctx context.Context, queueID string, stockLeft int, factor float64, usedSeen int, now time.Time) ([]queue.Admission, error) {
	if err := queue.ValidateQueueID(queueID); err != nil {
		return nil, err
	}
	more := 0
	if stockLeft > 0 {
		more = 1
	}
	args := append(s.base(now), s.opts.AdmissionTTL.Milliseconds(), queue.AdmitLimit(stockLeft, factor), more, max(usedSeen, -1))
	v, err := s.run(ctx, queueAdmit, queueID, args...)
	if err != nil {
		return nil, err
	}
	if len(v) == 1 {
		return nil, queue.ErrStale
	}
	exp := time.UnixMilli(now.UnixMilli() + s.opts.AdmissionTTL.Milliseconds()).UTC()
	out := make([]queue.Admission, 0, len(v)/3)
	for i := 0; i+2 < len(v); i += 3 {
		id, _ := v[i].(string)
		user, _ := v[i+1].(string)
		n, _ := v[i+2].(int64)
		out = append(out, queue.Admission{TicketID: id, QueueID: queueID, UserID: user, ExpiresAt: exp, Number: n})
	}
	return out, nil
}

// Use implements queue.Store.
func (s *QueueStore) Use(ctx context.Context, ticketID string, now time.Time) (queue.Admission, error) {
	queueID, v, err := s.runTicket(ctx, queueUse, ticketID, now)
	if err != nil {
		return queue.Admission{}, err
	}
	status, _ := v[0].(string)
	switch status {
	case "ok":
		exp, _ := v[1].(int64)
		user, _ := v[2].(string)
		n, _ := v[3].(int64)
		return queue.Admission{TicketID: ticketID, QueueID: queueID, UserID: user, ExpiresAt: time.UnixMilli(exp).UTC(), Used: true, Number: n}, nil
	case "used":
		return queue.Admission{}, queue.ErrAdmissionUsed
	case "expired":
		return queue.Admission{}, queue.ErrAdmissionExpired
	case "unknown":
		return queue.Admission{}, queue.ErrUnknownTicket
	default:
		return queue.Admission{}, queue.ErrNotAdmitted
	}
}

// SoldOut implements queue.Store.
func (s *QueueStore) SoldOut(ctx context.Context, queueID string, now time.Time) error {
	return s.mark(ctx, queueID, "soldout")
}

// End implements queue.Store.
func (s *QueueStore) End(ctx context.Context, queueID string, now time.Time) error {
	return s.mark(ctx, queueID, "ended")
}

func (s *QueueStore) mark(ctx context.Context, queueID, field string) error {
	if err := queue.ValidateQueueID(queueID); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	meta := s.QueueKeys(queueID)[0]
	_, err := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.HSet(ctx, meta, field, "1")
		p.PExpire(ctx, meta, s.Retention)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis: mark queue %q %s: %w", queueID, field, err)
	}
	return nil
}

// Stats implements queue.Store.
func (s *QueueStore) Stats(ctx context.Context, queueID string, now time.Time) (queue.Stats, error) {
	if err := queue.ValidateQueueID(queueID); err != nil {
		return queue.Stats{}, err
	}
	v, err := s.run(ctx, queueStats, queueID, s.base(now)...)
	if err != nil {
		return queue.Stats{}, err
	}
	if len(v) != 5 {
		return queue.Stats{}, fmt.Errorf("redis: queue %q: unexpected stats %v", queueID, v)
	}
	n := func(i int) int { x, _ := v[i].(int64); return int(x) }
	return queue.Stats{Waiting: n(0), Outstanding: n(1), Used: n(2), SoldOut: v[3] == "1", Ended: v[4] == "1"}, nil
}
