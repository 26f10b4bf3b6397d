package orderd

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// startupTimeout is Main.StartupTimeout's default. It bounds connecting to
// each backend at start: past it orderd gives up with an error that names the
// backend, instead of waiting without a word (a ZooKeeper that cannot be
// reached would otherwise keep it retrying).
const startupTimeout = lockConnectTimeout

// connect opens one backend (what: "lock", "redis") at target with open,
// bounded by Main.StartupTimeout, and logs the attempt and its outcome; the
// in-process backends ("memory") open silently.
func (m *Main) connect(ctx context.Context, what, target string, open func(context.Context) error) error {
	bound := m.StartupTimeout
	if bound <= 0 {
		bound = startupTimeout
	}
	return m.connectWithin(ctx, what, target, bound, open)
}

// connectWithin is connect with its own bound; 0 adds none (the database,
// whose open also migrates the schema, which may rightly wait for another
// instance's migration: its own timeouts bound the connection itself).
func (m *Main) connectWithin(ctx context.Context, what, target string, bound time.Duration, open func(context.Context) error) error {
	if target == "memory" {
		return open(ctx)
	}
	shown := redactURL(target)
	if bound > 0 {
		m.Logger.Info("connecting", "backend", what, "url", shown, "timeout", bound)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	} else {
		m.Logger.Info("connecting", "backend", what, "url", shown)
	}
	start := time.Now()
	if err := open(ctx); err != nil {
		if bound > 0 && (errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
			return fmt.Errorf("%s %s: no connection within %s (is it running, and is the address right?): %w",
				what, shown, bound, err)
		}
		return fmt.Errorf("%s %s: %w", what, shown, err)
	}
	m.Logger.Info("connected", "backend", what, "url", shown, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
