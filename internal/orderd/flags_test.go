package orderd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
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

// TestParseFlagsRefusesBeforeIO: a configuration orderd cannot run with is
// refused by ParseFlags, before anything is opened, with every problem
// named at once.
func TestParseFlagsRefusesBeforeIO(t *testing.T) {
	dir := t.TempDir()
	err := NewMain(io.Discard).ParseFlags([]string{"--db", "sqlite://" + dir + "/f.db", "--strategy", "magic",
		"--lock", "consul://x", "--sold-out-ttl", "-1s"}, func(string) string { return "" })
	for _, want := range []string{`--strategy "magic" is not supported`, "--lock", "--sold-out-ttl must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFlags gave %v, want an error naming %q", err, want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("ParseFlags opened the database: %v", entries)
	}
}

// refusesToStart checks that orderd on a fresh SQLite file, with args added,
// does not start: ParseFlags refuses the configuration, or Run what it could
// not open.
func refusesToStart(t *testing.T, args ...string) {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--db", testenv.SQLiteURL(t)}, args...)
	if err := startErr(context.Background(), NewMain(io.Discard), args...); err == nil {
		t.Fatalf("%v: orderd started", args)
	}
}

// startErr is the error that keeps m from starting with args, from
// ParseFlags or Run, or nil when it started (and is closed again).
func startErr(ctx context.Context, m *Main, args ...string) error {
	if err := m.ParseFlags(args, func(string) string { return "" }); err != nil {
		return err
	}
	err := m.Run(ctx)
	m.Close(context.Background())
	return err
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

// TestRedisURLsShared: the flags that name one Redis share one client, the
// --lock URL's own ttl parameter aside.
func TestRedisURLsShared(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, nil},
		{[]string{"--lock", "redis://h:6379/0?ttl=5s", "--idempotency", "redis://h:6379/0"}, []string{"redis://h:6379/0"}},
		{[]string{"--lock", "redis://h:6379/0", "--idempotency", "redis://h:6379/0", "--rate-limit-user", "5/s"}, []string{"redis://h:6379/0"}},
		{[]string{"--idempotency", "redis://h:6379/0", "--rate-limit-user", "5/s", "--rate-limit-store", "redis://h:6379/1"},
			[]string{"redis://h:6379/0", "redis://h:6379/1"}},
		{[]string{"--rate-limit-store", "redis://h:6379/1"}, nil}, // no --rate-limit-user: no limiter
	} {
		m := NewMain(io.Discard)
		if err := m.ParseFlags(tc.args, func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
		if got := m.Config.redisURLs(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%v: Redis clients for %v, want %v", tc.args, got, tc.want)
		}
	}
}
