//go:build failpoints

package failpoint

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// Enabled reports whether this binary was built with `-tags failpoints`.
const Enabled = true

// point is one armed failpoint and how many passes it still pauses.
type point struct {
	mu   sync.Mutex
	term Term
}

// points is read from FLASHORDER_FAILPOINTS once, at start, and never
// changes afterwards, so Hit reads the map without a lock.
var points = load()

func load() map[string]*point {
	terms, err := Parse(os.Getenv(EnvVar))
	if err != nil {
		// A fault test that set a wrong spec must not run as if it had none.
		fmt.Fprintf(os.Stderr, "%s: %v\n", EnvVar, err)
		os.Exit(2)
	}
	m := make(map[string]*point, len(terms))
	for name, t := range terms {
		m[name] = &point{term: t}
	}
	return m
}

// Hit pauses the caller as FLASHORDER_FAILPOINTS says for the failpoint name,
// or until ctx ends.
func Hit(ctx context.Context, name string) { _ = Fail(ctx, name) }

// Fail is Hit for the points where a fault can be injected: it pauses like Hit,
// and returns ErrInjected when the failpoint's action is error().
func Fail(ctx context.Context, name string) error {
	p := points[name]
	if p == nil {
		return nil
	}
	p.mu.Lock()
	if p.term.Count == 0 {
		p.mu.Unlock()
		return nil
	}
	if p.term.Count > 0 {
		p.term.Count--
	}
	d, fail := p.term.Sleep, p.term.Fail
	p.mu.Unlock()
	// Fault tests wait for this line in the process's log to know that it
	// is inside the failpoint (e.g. holding a row lock) before they strike.
	fmt.Fprintf(os.Stderr, "failpoint %s: %s\n", name, action(d, fail))
	if fail {
		return ErrInjected
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// action names what a failpoint does on this pass, for its log line.
func action(d time.Duration, fail bool) string {
	if fail {
		return "error()"
	}
	return "sleep(" + d.String() + ")"
}
