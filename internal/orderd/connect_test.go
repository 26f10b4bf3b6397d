package orderd

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStartupGivesUp starts orderd against a "ZooKeeper" that accepts
// connections and never answers: it must log what it connects to and give
// up within its bound with an error naming the lock backend, not hang.
func TestStartupGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // never answered
		}
	}()
	var logs bytes.Buffer
	m := NewMain(&logs)
	dir := t.TempDir()
	if err := m.ParseFlags([]string{"--listen", "127.0.0.1:0", "--admin-token", "x", "--db", "sqlite://" + dir + "/f.db",
		"--lock", "zk://" + ln.Addr().String() + "/flashorder"}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	m.StartupTimeout = 1500 * time.Millisecond
	start := time.Now()
	err = m.Run(context.Background())
	took := time.Since(start)
	m.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "lock zk://"+ln.Addr().String()) || !strings.Contains(err.Error(), "no connection within 1.5s") {
		t.Errorf("Run returned %v, want an error naming the lock backend and the bound", err)
	}
	if took > 6*time.Second {
		t.Errorf("Run gave up after %v, want about 1.5s", took)
	}
	for _, want := range []string{"msg=connecting backend=database", "msg=connected backend=database", "msg=connecting backend=lock url=zk://"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the start-up log lacks %q:\n%s", want, logs.String())
		}
	}
}
