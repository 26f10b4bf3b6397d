package orderd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

func TestParseFlagsEnvAndPrecedence(t *testing.T) {
	env := map[string]string{
		"ORDERD_LISTEN":           ":9999",
		"ORDERD_DB":               "postgres://x@h:1/db",
		"ORDERD_ADMIN_TOKEN":      "from-env",
		"ORDERD_SHUTDOWN_TIMEOUT": "5s",
	}
	m := NewMain(io.Discard)
	if err := m.ParseFlags([]string{"--listen", ":7777"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if c.Listen != ":7777" || c.DB != "postgres://x@h:1/db" || c.AdminToken != "from-env" || c.ShutdownTimeout != 5*time.Second || c.Strategy != "batch" {
		t.Fatalf("config %+v", c)
	}
	defaults := NewMain(io.Discard)
	if err := defaults.ParseFlags(nil, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if d := defaults.Config; d.Listen != ":8080" || d.DB != "sqlite://data/flashorder.db" || d.Idempotency != "memory" || d.Lock != "memory" {
		t.Fatalf("defaults %+v", d)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"bad duration flag": {args: []string{"--shutdown-timeout", "soon"}, want: "invalid value"},
		"bad duration env":  {env: map[string]string{"ORDERD_SHUTDOWN_TIMEOUT": "soon"}, want: "ORDERD_SHUTDOWN_TIMEOUT"},
		"unknown flag":      {args: []string{"--nope"}, want: "not defined"},
		"stray argument":    {args: []string{"serve"}, want: "unexpected argument"},
		"bad log format":    {args: []string{"--log-format", "xml"}, want: "log-format"},
	} {
		t.Run(name, func(t *testing.T) {
			err := NewMain(io.Discard).ParseFlags(tc.args, func(k string) string { return tc.env[k] })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestRunRefusesUnknownBackends(t *testing.T) {
	for _, args := range [][]string{
		{"--strategy", "magic"},
		{"--idempotency", "memcached://x"},
		{"--db", "oracle://x"},
	} {
		refusesToStart(t, args...)
	}
}

// refusesToStart checks that orderd on a fresh SQLite file, with args added,
// parses its flags but does not start.
func refusesToStart(t *testing.T, args ...string) {
	t.Helper()
	m := NewMain(io.Discard)
	args = append([]string{"--listen", "127.0.0.1:0", "--db", testenv.SQLiteURL(t)}, args...)
	if err := m.ParseFlags(args, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	err := m.Run(context.Background())
	m.Close(context.Background())
	if err == nil {
		t.Fatalf("%v: orderd started", args)
	}
}

// TestGracefulShutdown stops orderd as SIGTERM would while orders are in
// flight: run returns without error and every order answered 201 is stored.
func TestGracefulShutdown(t *testing.T) {
	dbURL := testenv.SQLiteURL(t)
	ctx, stop := context.WithCancel(context.Background())
	mainCh := make(chan *Main, 1)
	done := make(chan error, 1)
	go func() {
		m := NewMain(io.Discard)
		if err := m.ParseFlags([]string{"--listen", "127.0.0.1:0", "--db", dbURL, "--admin-token", adminToken}, func(string) string { return "" }); err != nil {
			done <- err
			return
		}
		if err := m.Run(ctx); err != nil {
			done <- err
			return
		}
		mainCh <- m
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- m.Close(sctx)
	}()
	var m *Main
	select {
	case m = <-mainCh:
	case err := <-done:
		t.Fatal(err)
	}
	c := orderhttp.NewClient(m.URL(), adminToken)
	c.HTTPClient = &http.Client{Transport: &http.Transport{}}
	putProduct(t, c, "drain-1", 1000, 0)

	// Workers order until orderd stops answering; the stop comes once 50
	// orders are in, so that it lands while others are in flight.
	var mu sync.Mutex
	var created []string
	enough := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				res, err := c.CreateOrder(context.Background(), order(fmt.Sprintf("drain-%d-%d", w, i), item("drain-1", 1)), "")
				if err != nil {
					return
				}
				mu.Lock()
				created = append(created, res.Order.ID)
				if len(created) == 50 {
					close(enough)
				}
				mu.Unlock()
			}
		}()
	}
	<-enough
	stop()
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// Every 201 is in the database: reopen it and look.
	_, c2 := startOrderd(t, dbURL)
	for _, id := range created {
		if _, err := c2.Order(context.Background(), id); err != nil {
			t.Fatalf("order %s answered 201 before shutdown is missing: %v", id, err)
		}
	}
	if p := getProduct(t, c2, "drain-1"); p.Sold != int64(len(created)) {
		t.Fatalf("sold %d, answered %d", p.Sold, len(created))
	}
	assertAudit(t, c2)
}
