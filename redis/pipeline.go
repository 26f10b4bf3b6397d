package redis

import (
	"context"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Defaults of scriptBatcher.
const (
	// maxBatch bounds the scripts one pipeline sends.
	maxBatch = 256
	// maxFlushers bounds the pipelines in flight at once.
	maxFlushers = 4
	// maxPending bounds the scripts waiting for a pipeline; beyond it a
	// caller waits for room until its context ends (load shedding).
	maxPending = 8192
)

// scriptBatcher runs the Lua scripts of many concurrent callers in
// pipelines: one write and one read per batch instead of one round trip per
// call, so that a crowd's requests do not queue for the client's pool
// connections. No goroutine outlives the calls: a caller that finds fewer
// than maxFlushers flushing starts one, and a flusher ends when nothing is
// pending.
type scriptBatcher struct {
	client  goredis.UniversalClient
	timeout time.Duration
	calls   chan *scriptCall
	active  atomic.Int32
}

// scriptCall is one caller's script and, once done is closed, its answer.
type scriptCall struct {
	script *goredis.Script
	keys   []string
	args   []any
	res    []any
	err    error
	done   chan struct{}
}

func newScriptBatcher(client goredis.UniversalClient, timeout time.Duration) *scriptBatcher {
	return &scriptBatcher{client: client, timeout: timeout, calls: make(chan *scriptCall, maxPending)}
}

// run runs script with keys and args in the next pipeline and returns its
// answer, or ctx's error when ctx ends first.
func (b *scriptBatcher) run(ctx context.Context, script *goredis.Script, keys []string, args ...any) ([]any, error) {
	c := &scriptCall{script: script, keys: keys, args: args, done: make(chan struct{})}
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.active.Load() < maxFlushers {
		if b.active.Add(1) <= maxFlushers {
			go b.flushLoop()
		} else {
			b.active.Add(-1)
		}
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// flushLoop sends pipelines while scripts are pending. It gives up its
// place before a last look at the queue, so that a call sent meanwhile
// either sees the place free (and starts a flusher) or is seen here.
func (b *scriptBatcher) flushLoop() {
	batch := make([]*scriptCall, 0, maxBatch)
	for {
		for {
			batch = batch[:0]
		drain:
			for len(batch) < maxBatch {
				select {
				case c := <-b.calls:
					batch = append(batch, c)
				default:
					break drain
				}
			}
			if len(batch) == 0 {
				break
			}
			b.flush(batch)
		}
		b.active.Add(-1)
		if len(b.calls) == 0 {
			return
		}
		if b.active.Add(1) > maxFlushers {
			b.active.Add(-1)
			return
		}
	}
}

// flush sends batch in one pipeline (EVALSHA; a script the server does not
// have is run again alone, which loads it) and answers every call.
func (b *scriptBatcher) flush(batch []*scriptCall) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	pipe := b.client.Pipeline()
	cmds := make([]*goredis.Cmd, len(batch))
	for i, c := range batch {
		cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, c := range batch {
		res, err := cmds[i].Slice()
		if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			res, err = c.script.Run(ctx, b.client, c.keys, c.args...).Slice()
		}
		c.res, c.err = res, err
		close(c.done)
	}
}
