// Package elect runs a background job on exactly one instance at a time: the
// one, of all that share a flashorder.Locker, that holds the job's lock. The
// expiry sweeper (checkout.Sweeper) and the events relay (relay.Relay) are
// elected this way. When the leader dies, its lock is released by the
// backend (session or lease expiry) and a waiting instance takes over.
package elect

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/flashorder/flashorder"
)

// Options tunes Run.
type Options struct {
	// Name starts the job's log messages ("sweeper", "events relay").
	Name string
	// Logger receives leadership changes and errors.
	Logger *slog.Logger
	// Retry is the wait after the locker failed before asking again.
	Retry time.Duration
	// OnLeader, when set, is called with true when this instance starts
	// leading and with false when it steps down.
	OnLeader func(leading bool)
}

// Run competes for key through locker until ctx ends. Each time it holds the
// lock it calls lead with a context that also ends when the lock is lost, so
// that work still open then is abandoned (a transaction rolls back instead
// of committing); when lead returns it steps down and releases the lock.
// lead should return only when its context ends.
func Run(ctx context.Context, locker flashorder.Locker, key string, opts Options, lead func(ctx context.Context)) {
	for ctx.Err() == nil {
		lock, err := locker.Lock(ctx, key)
		if err != nil {
			if ctx.Err() == nil {
				opts.Logger.Warn(opts.Name+": acquire leadership", "err", err)
				Sleep(ctx, opts.Retry)
			}
			continue
		}
		hold(ctx, lock, opts, lead)
	}
}

// hold runs lead while lock is held and ctx lives, then steps down.
func hold(ctx context.Context, lock flashorder.Lock, opts Options, lead func(ctx context.Context)) {
	opts.Logger.Info(opts.Name+": leading", "token", lock.Token())
	if opts.OnLeader != nil {
		opts.OnLeader(true)
	}
	lctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-lock.Lost():
			cancel()
		case <-lctx.Done():
		}
	}()
	lead(lctx)
	cancel()
	if opts.OnLeader != nil {
		opts.OnLeader(false)
	}
	unlockCtx, cancelUnlock := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelUnlock()
	select {
	case <-lock.Lost():
		opts.Logger.Warn(opts.Name + ": lost leadership")
	default:
		if err := lock.Unlock(unlockCtx); err != nil {
			opts.Logger.Warn(opts.Name+": release leadership", "err", err)
		}
	}
}

// Background runs one function in its own goroutine between Start and Stop.
// The zero value is ready to use.
type Background struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs run in the background until Stop; a second Start does nothing.
func (b *Background) Start(run func(ctx context.Context)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel, b.done = cancel, make(chan struct{})
	go func() {
		defer close(b.done)
		run(ctx)
	}()
}

// Stop ends a started run's context and waits until run returned.
func (b *Background) Stop() {
	b.mu.Lock()
	cancel, done := b.cancel, b.done
	b.mu.Unlock()
	if done == nil {
		return
	}
	cancel()
	<-done
}

// Sleep waits for d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
