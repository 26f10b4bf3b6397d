package http

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

// TestOrderCtx checks the lazily armed order deadline against what
// context.WithDeadline gives: the same deadline, cancellation and values,
// with the timer made only when someone waits.
func TestOrderCtx(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")

	t.Run("unarmed", func(t *testing.T) {
		deadline := time.Now().Add(time.Hour)
		oc := &orderCtx{}
		oc.init(parent, deadline)
		if d, ok := oc.Deadline(); !ok || !d.Equal(deadline) {
			t.Fatalf("Deadline() = %v, %v; want %v, true", d, ok, deadline)
		}
		if v := oc.Value(ctxKey{}); v != "v" {
			t.Fatalf("Value = %v, want the parent's", v)
		}
		if oc.armed.Load() {
			t.Fatal("armed by Deadline or Value")
		}
		oc.release() // nothing armed: nothing to stop
	})

	t.Run("deadline passes", func(t *testing.T) {
		oc := &orderCtx{}
		oc.init(parent, time.Now().Add(20*time.Millisecond))
		child, cancel := context.WithCancel(oc) // derives: arms
		defer cancel()
		if !oc.armed.Load() {
			t.Fatal("deriving a context did not arm the deadline")
		}
		select {
		case <-child.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the derived context was not cancelled at the deadline")
		}
		if !errors.Is(oc.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err() = %v, child %v; want DeadlineExceeded", oc.Err(), child.Err())
		}
		if v := child.Value(ctxKey{}); v != "v" {
			t.Fatalf("child Value = %v, want the parent's", v)
		}
	})

	t.Run("parent cancelled", func(t *testing.T) {
		p, cancelParent := context.WithCancel(parent)
		oc := &orderCtx{}
		oc.init(p, time.Now().Add(time.Hour))
		done := oc.Done()
		cancelParent()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("not cancelled with the parent")
		}
		if !errors.Is(oc.Err(), context.Canceled) {
			t.Fatalf("Err() = %v, want Canceled", oc.Err())
		}
	})

	t.Run("release", func(t *testing.T) {
		oc := &orderCtx{}
		oc.init(parent, time.Now().Add(time.Hour))
		if oc.Err() != nil {
			t.Fatalf("Err() = %v before the deadline", oc.Err())
		}
		oc.release()
		if !errors.Is(oc.Err(), context.Canceled) {
			t.Fatalf("Err() after release = %v, want Canceled", oc.Err())
		}
	})

	t.Run("earlier parent deadline", func(t *testing.T) {
		early := time.Now().Add(time.Minute)
		p, cancel := context.WithDeadline(parent, early)
		defer cancel()
		oc := &orderCtx{}
		oc.init(p, time.Now().Add(time.Hour))
		if d, ok := oc.Deadline(); !ok || !d.Equal(early) {
			t.Fatalf("Deadline() = %v, %v; want the parent's %v", d, ok, early)
		}
	})

	t.Run("no deadline", func(t *testing.T) {
		p, cancel := context.WithCancel(parent)
		defer cancel()
		oc := &orderCtx{}
		oc.init(p, time.Time{})
		if _, ok := oc.Deadline(); ok {
			t.Fatal("a deadline without OrderTimeout")
		}
		if oc.Done() != p.Done() {
			t.Fatal("Done() is not the parent's without a deadline")
		}
		oc.release()
		if oc.Err() != nil {
			t.Fatal("release cancelled the parent")
		}
	})
}
