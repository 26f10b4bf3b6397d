package netdelay_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder/internal/testkit/netdelay"
)

// echoServer sends back every byte it receives, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

func start(t *testing.T, delay time.Duration) *netdelay.Proxy {
	t.Helper()
	p, err := netdelay.Start("127.0.0.1:0", echoServer(t), delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// exchange writes lines to addr over one connection, each a separate write
// gap apart, then reads their echoes and checks them, in order.
func exchange(addr string, lines int, gap time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	for i := range lines {
		if i > 0 {
			time.Sleep(gap)
		}
		if _, err := fmt.Fprintf(c, "line %d\n", i); err != nil {
			return err
		}
	}
	r := bufio.NewReader(c)
	for i := range lines {
		got, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("echo %d: %w", i, err)
		}
		if want := fmt.Sprintf("line %d\n", i); got != want {
			return fmt.Errorf("echo %d: %q, want %q", i, got, want)
		}
	}
	return nil
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRoundTripPaysTheDelayEachWay: a round trip through the proxy takes at
// least twice the delay; the bound is a lower one, which no slow machine can
// break.
func TestRoundTripPaysTheDelayEachWay(t *testing.T) {
	const delay = 30 * time.Millisecond
	p := start(t, delay)
	for range 3 {
		began := time.Now()
		if err := exchange(p.Addr(), 1, 0); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took < 2*delay {
			t.Fatalf("a round trip took %v through a proxy delaying %v each way; want >= %v", took, delay, 2*delay)
		}
	}
}

// TestDelayLineDoesNotSerialise: many connections, each writing several
// chunks apart, all pay the delay at once rather than one after another. A
// proxy that slept the delay per chunk it read would take at least
// lines*delay per connection (10 s here); the delay line takes about
// 2*delay plus the chunks' spacing (0.7 s). The bound, half the serial
// time, leaves over 4 s for a loaded machine.
func TestDelayLineDoesNotSerialise(t *testing.T) {
	const (
		delay = 250 * time.Millisecond
		conns = 32
		lines = 40
	)
	p := start(t, delay)
	began := time.Now()
	errs := make(chan error, conns)
	for range conns {
		go func() { errs <- exchange(p.Addr(), lines, 5*time.Millisecond) }()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(began)
	if took < 2*delay {
		t.Fatalf("%d connections' exchanges took %v; want >= %v, the delay each way", conns, took, 2*delay)
	}
	if serial := lines * delay; took >= serial/2 {
		t.Fatalf("%d connections of %d chunks each took %v through a %v delay: serialised (one chunk per delay would take >= %v)",
			conns, lines, took, delay, serial)
	}
	t.Logf("%d connections x %d chunks through %v each way: %v", conns, lines, delay, took)
}

// TestNoDelay: a delay of 0 forwards bytes unchanged.
func TestNoDelay(t *testing.T) {
	p := start(t, 0)
	if err := exchange(p.Addr(), 5, 0); err != nil {
		t.Fatal(err)
	}
}

// TestSubMillisecondDelay: the delay is not rounded to whole milliseconds
// away from zero (Toxiproxy's latency toxic counts milliseconds): 200
// round trips through 0.5 ms each way take at least 200 ms.
func TestSubMillisecondDelay(t *testing.T) {
	const delay = 500 * time.Microsecond
	p := start(t, delay)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	began := time.Now()
	const trips = 200
	for i := range trips {
		if _, err := fmt.Fprintf(c, "%d\n", i); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(began)
	if took < trips*2*delay {
		t.Fatalf("%d round trips took %v; want >= %v", trips, took, trips*2*delay)
	}
	t.Logf("%d round trips through %v each way: %v (%v each)", trips, delay, took, took/trips)
}
