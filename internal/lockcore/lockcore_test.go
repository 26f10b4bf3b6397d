package lockcore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/lockcore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGate(t *testing.T) {
	var g lockcore.Gate
	if g.Closed() {
		t.Fatal("zero Gate is closed")
	}
	if !g.Enter() {
		t.Fatal("Enter on an open gate = false")
	}
	g.Add() // a goroutine started from within the counted one
	if !g.Close() {
		t.Fatal("first Close = false")
	}
	if g.Close() {
		t.Fatal("second Close = true")
	}
	if !g.Closed() {
		t.Fatal("Closed after Close = false")
	}
	if g.Enter() {
		t.Fatal("Enter after Close = true")
	}

	waited := make(chan struct{})
	go func() {
		g.Wait()
		close(waited)
	}()
	for i := range 2 {
		select {
		case <-waited:
			t.Fatalf("Wait returned with %d goroutines still in", 2-i)
		case <-time.After(20 * time.Millisecond):
		}
		g.Leave()
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after every Leave")
	}
}

func TestGateConcurrent(t *testing.T) {
	var g lockcore.Gate
	var wg sync.WaitGroup
	var mu sync.Mutex
	entered := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.Enter() {
				mu.Lock()
				entered++
				mu.Unlock()
				g.Leave()
			}
		}()
	}
	g.Close()
	g.Wait()
	wg.Wait()
	if g.Enter() {
		t.Fatal("Enter after Close = true")
	}
	t.Logf("%d of 50 entered before Close", entered)
}

func TestMergeCancel(t *testing.T) {
	type key struct{}
	tests := []struct {
		name        string
		cancelCtx   bool
		cancelOther bool
		wantDone    bool
	}{
		{"neither", false, false, false},
		{"ctx", true, false, true},
		{"other", false, true, true},
		{"both", true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
			defer cancel()
			other, cancelOther := context.WithCancel(context.Background())
			defer cancelOther()
			merged, stop := lockcore.MergeCancel(ctx, other)
			defer stop()
			if merged.Value(key{}) != "v" {
				t.Error("merged context lost ctx's values")
			}
			if tt.cancelCtx {
				cancel()
			}
			if tt.cancelOther {
				cancelOther()
			}
			select {
			case <-merged.Done():
				if !tt.wantDone {
					t.Fatal("merged context ended")
				}
				if !errors.Is(merged.Err(), context.Canceled) {
					t.Fatalf("Err = %v, want context.Canceled", merged.Err())
				}
			case <-time.After(50 * time.Millisecond):
				if tt.wantDone {
					t.Fatal("merged context did not end")
				}
			}
		})
	}
}

func TestMergeCancelStop(t *testing.T) {
	other, cancelOther := context.WithCancel(context.Background())
	defer cancelOther()
	merged, stop := lockcore.MergeCancel(context.Background(), other)
	stop()
	if merged.Err() == nil {
		t.Fatal("merged context alive after stop")
	}
	stop() // a second call is harmless
}

func TestLockErr(t *testing.T) {
	backendErr := errors.New("connection refused")
	tests := []struct {
		name              string
		err               error
		closed, sessLost  bool
		want              string
		isClosed, isLost  bool
		isCause, isCtxErr bool
	}{
		{name: "backend", err: backendErr, want: `zk: lock "k": connection refused`, isCause: true},
		{name: "ctx", err: context.DeadlineExceeded, want: `zk: lock "k": context deadline exceeded`, isCtxErr: true},
		{name: "closed wins", err: backendErr, closed: true, sessLost: true, want: flashorder.ErrLockerClosed.Error(), isClosed: true},
		{name: "session lost flag", err: backendErr, sessLost: true,
			want: `zk: lock "k": flashorder: lock session lost (connection refused)`, isLost: true, isCause: true},
		{name: "session lost error", err: fmt.Errorf("wait: %w", flashorder.ErrLockSessionLost),
			want: `zk: lock "k": flashorder: lock session lost (wait: flashorder: lock session lost)`, isLost: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := lockcore.LockErr("zk", "k", tt.err, tt.closed, tt.sessLost)
			if err.Error() != tt.want {
				t.Errorf("Error() = %q, want %q", err, tt.want)
			}
			for _, c := range []struct {
				target error
				want   bool
			}{
				{flashorder.ErrLockerClosed, tt.isClosed},
				{flashorder.ErrLockSessionLost, tt.isLost},
				{backendErr, tt.isCause},
				{context.DeadlineExceeded, tt.isCtxErr},
			} {
				if got := errors.Is(err, c.target); got != c.want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", c.target, got, c.want)
				}
			}
		})
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestHeld walks the state machine: held, then released or lost, and nothing
// after that.
func TestHeld(t *testing.T) {
	tests := []struct {
		name  string
		steps []string // "release" or "lose"
		want  []bool   // whether each step took effect
	}{
		{"release", []string{"release"}, []bool{true}},
		{"lose", []string{"lose"}, []bool{true}},
		{"release twice", []string{"release", "release"}, []bool{true, false}},
		{"lose twice", []string{"lose", "lose"}, []bool{true, false}},
		{"release then lose", []string{"release", "lose"}, []bool{true, false}},
		{"lose then release", []string{"lose", "release"}, []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := lockcore.NewHeld("sku/1", 42)
			if h.Key() != "sku/1" || h.Token() != 42 {
				t.Fatalf("Key, Token = %q, %d", h.Key(), h.Token())
			}
			if isClosed(h.Lost()) {
				t.Fatal("Lost closed while held")
			}
			for i, step := range tt.steps {
				var took bool
				switch step {
				case "release":
					err := h.Release()
					if err != nil && !errors.Is(err, flashorder.ErrLockNotHeld) {
						t.Fatalf("Release: %v", err)
					}
					took = err == nil
				case "lose":
					took = h.Lose()
				}
				if took != tt.want[i] {
					t.Fatalf("step %d (%s) took effect = %v, want %v", i, step, took, tt.want[i])
				}
				if !isClosed(h.Lost()) {
					t.Fatalf("Lost open after %s", step)
				}
			}
		})
	}
}

func TestHeldRace(t *testing.T) {
	h := lockcore.NewHeld("k", 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var won bool
			if i%2 == 0 {
				won = h.Release() == nil
			} else {
				won = h.Lose()
			}
			if won {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d calls ended the lock, want 1", wins)
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ key, want string }{
		{"", ""},
		{"sku-1.A_z", "sku-1.A_z"},
		{"sku/1", "sku%2F1"},
		{"a b", "a%20b"},
		{"100%", "100%25"},
		{"..", ".."},
		{"{k}:x", "%7Bk%7D%3Ax"},
		{"é", "%C3%A9"},
	}
	for _, tt := range tests {
		if got := lockcore.Escape(tt.key); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	// Distinct keys, distinct names: the escape is reversible.
	seen := map[string]string{}
	for _, k := range []string{"a", "a-b", "a/b", "a%2Fb", "a%b", "a b", "a+b"} {
		n := lockcore.Escape(k)
		if prev, ok := seen[n]; ok {
			t.Errorf("Escape(%q) = Escape(%q) = %q", k, prev, n)
		}
		seen[n] = k
	}
}

func TestGateRetry(t *testing.T) {
	tests := []struct {
		name        string
		closed      bool // the gate is closed before Retry
		failures    int  // attempts that fail before one succeeds; -1: never
		stop        bool // close stop after the first attempt
		wantAttempt func(n int) bool
	}{
		{name: "first try", failures: 0, wantAttempt: func(n int) bool { return n == 1 }},
		{name: "third try", failures: 2, wantAttempt: func(n int) bool { return n == 3 }},
		{name: "stopped", failures: -1, stop: true, wantAttempt: func(n int) bool { return n >= 1 }},
		{name: "closed gate", closed: true, failures: -1, wantAttempt: func(n int) bool { return n == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g lockcore.Gate
			if tt.closed {
				g.Close()
			}
			stop := make(chan struct{})
			released := make(chan struct{})
			var mu sync.Mutex
			attempts := 0
			g.Retry(stop, func() bool {
				mu.Lock()
				defer mu.Unlock()
				attempts++
				if attempts == 1 && tt.stop {
					close(stop)
				}
				return tt.failures >= 0 && attempts > tt.failures
			}, func() {
				select {
				case <-released:
					t.Error("release called twice")
				default:
					close(released)
				}
			})
			select {
			case <-released:
			case <-time.After(5 * time.Second):
				t.Fatal("release not called")
			}
			g.Close()
			g.Wait() // the goroutine is gone
			mu.Lock()
			defer mu.Unlock()
			if !tt.wantAttempt(attempts) {
				t.Fatalf("%d attempts", attempts)
			}
		})
	}
}
