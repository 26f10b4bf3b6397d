package locktest_test

import (
	"bufio"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/flashorder/flashorder/locktest"
)

// echoServer answers every line it reads with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line and waits up to wait for its echo.
func roundTrip(c net.Conn, r *bufio.Reader, line string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	got, err := r.ReadString('\n')
	_ = c.SetReadDeadline(time.Time{})
	return got, err
}

// TestProxyPartition: during a Partition an open connection stays open but
// carries nothing, and a new one is accepted but not served; Heal delivers
// what waited, in order. Cut closes connections.
func TestProxyPartition(t *testing.T) {
	p := locktest.NewProxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, "one", 5*time.Second); err != nil || got != "one\n" {
		t.Fatalf("before the partition: %q, %v", got, err)
	}

	p.Partition()
	// The proxy holds the line, so no echo can come however long we wait;
	// 300ms is only how long the test looks.
	if got, err := roundTrip(c, r, "two", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("during the partition: %q, %v; want no answer", got, err)
	}
	late, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("a new connection during the partition: %v", err)
	}
	defer late.Close()
	lr := bufio.NewReader(late)
	if got, err := roundTrip(late, lr, "late", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a new connection during the partition: %q, %v; want no answer", got, err)
	}

	p.Heal()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after Heal, what was sent during the partition: %q, %v", got, err)
	}
	if got, err := roundTrip(c, r, "three", 5*time.Second); err != nil || got != "three\n" {
		t.Fatalf("after Heal: %q, %v", got, err)
	}
	_ = late.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := lr.ReadString('\n'); err != nil || got != "late\n" {
		t.Fatalf("after Heal, the connection made during the partition: %q, %v", got, err)
	}

	p.Cut()
	if _, err := roundTrip(c, r, "four", 5*time.Second); err == nil {
		t.Fatalf("after Cut the connection still answers")
	}
}
