package relay_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/glebarez/go-sqlite"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/relay"
)

// TestRelayThroughput measures the relay, for docs/BENCHMARKS.md: how fast
// it drains a backlog of events (events/s), and the publish lag (commit to
// marked sent, an upper bound of commit to acknowledgement) of events
// committed at a steady rate, in batches every 10 ms as the batch strategy
// commits them. Run it alone, by hand:
//
//	FLASHORDER_RELAY_BENCH=1 go test ./relay -run TestRelayThroughput -v
//
// FLASHORDER_RELAY_BENCH_RATE (default 3500 events/s) and
// FLASHORDER_RELAY_BENCH_SECONDS (default 10) set the steady load,
// FLASHORDER_RELAY_BENCH_BACKLOG (default 20000) the backlog,
// FLASHORDER_RELAY_BENCH_SINKS (default "webhook nats") the sinks and
// FLASHORDER_RELAY_BENCH_WEBHOOK_DELAY (default 0) how long the webhook
// endpoint takes to answer, and FLASHORDER_RELAY_BENCH_DB (default sqlite;
// postgres for the services' PostgreSQL) the outbox, and
// FLASHORDER_RELAY_BENCH_MAXBATCH Options.MaxBatch. The nats case needs the
// services' cluster.
func TestRelayThroughput(t *testing.T) {
	if os.Getenv("FLASHORDER_RELAY_BENCH") != "1" {
		t.Skip("a measurement: set FLASHORDER_RELAY_BENCH=1")
	}
	rate, seconds, backlog, names := 3500, 10, 20000, "webhook nats"
	fmt.Sscan(os.Getenv("FLASHORDER_RELAY_BENCH_RATE"), &rate)
	fmt.Sscan(os.Getenv("FLASHORDER_RELAY_BENCH_SECONDS"), &seconds)
	fmt.Sscan(os.Getenv("FLASHORDER_RELAY_BENCH_BACKLOG"), &backlog)
	if v := os.Getenv("FLASHORDER_RELAY_BENCH_SINKS"); v != "" {
		names = v
	}
	delay, _ := time.ParseDuration(os.Getenv("FLASHORDER_RELAY_BENCH_WEBHOOK_DELAY"))
	sinks := map[string]func(t *testing.T) flashorder.EventPublisher{
		"webhook": func(t *testing.T) flashorder.EventPublisher {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				time.Sleep(delay)
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(srv.Close)
			return webhook(t, srv.URL)
		},
		"nats": func(t *testing.T) flashorder.EventPublisher {
			sink, _ := natsSink(t, testenv.NATSURL(t))
			return sink
		},
	}
	for _, name := range strings.Fields(names) {
		t.Run(name, func(t *testing.T) {
			sink := sinks[name](t)
			ctx := context.Background()
			dbURL := testenv.SQLiteURL(t)
			if os.Getenv("FLASHORDER_RELAY_BENCH_DB") == "postgres" {
				dbURL = testenv.PostgresURL(t)
			}
			db, err := gormdb.Open(ctx, dbURL, gormdb.Options{Events: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for n := backlog; n > 0; n -= 500 {
				insertEvents(t, db, min(n, 500))
			}
			opts := relay.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
			fmt.Sscan(os.Getenv("FLASHORDER_RELAY_BENCH_MAXBATCH"), &opts.MaxBatch)
			start := time.Now()
			r := relay.New(db, sink, newLocker(t), opts)
			r.Start()
			defer r.Stop()
			waitDrained(t, db, 10*time.Minute)
			drain := time.Since(start)
			t.Logf("%s: backlog of %d events drained in %s: %.0f events/s", name, backlog, drain.Round(time.Millisecond), float64(backlog)/drain.Seconds())

			// Steady load: rate events/s, a batch every 10 ms.
			first := maxID(t, db)
			per := rate / 100
			tick := time.NewTicker(10 * time.Millisecond)
			end := time.Now().Add(time.Duration(seconds) * time.Second)
			for time.Now().Before(end) {
				<-tick.C
				insertEvents(t, db, per)
			}
			tick.Stop()
			loadEnd := time.Now()
			waitDrained(t, db, 10*time.Minute)
			lags := steadyLags(t, dbURL, first)
			p := func(q float64) time.Duration { return lags[min(len(lags)-1, int(q*float64(len(lags))))] }
			t.Logf("%s: steady load of %d events in %ds (%.0f events/s committed, target %d): drained %s after the load ended; lag commit to marked sent p50 %s p99 %s max %s",
				name, len(lags), seconds, float64(len(lags))/float64(seconds), rate, time.Since(loadEnd).Round(time.Millisecond), p(.5).Round(time.Millisecond), p(.99).Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
		})
	}
}

// insertEvents commits n pending events of n new orders in one statement,
// their time the insert's.
func insertEvents(t *testing.T, db *gormdb.DB, n int) {
	t.Helper()
	now := time.Now().UnixMicro()
	var q strings.Builder
	q.WriteString("INSERT INTO events (event_id, order_id, seq, event_type, time_us, data) VALUES ")
	args := make([]any, 0, 6*n)
	for i := range n {
		if i > 0 {
			q.WriteString(",")
		}
		q.WriteString("(?,?,?,?,?,?)")
		order := uuid.NewString()
		data := fmt.Sprintf(`{"id":%q,"user_id":"u-%d","status":"created","items":[{"sku":"hot-1","quantity":1,"price_cents":199900}],"total_cents":199900,"created_at":%q}`,
			order, i, time.UnixMicro(now).UTC().Format(time.RFC3339Nano))
		args = append(args, uuid.NewString(), order, 1, string(flashorder.EventOrderCreated), now, data)
	}
	if err := db.Exec(context.Background(), q.String(), args...); err != nil {
		t.Fatal(err)
	}
}

func waitDrained(t *testing.T, db *gormdb.DB, within time.Duration) {
	t.Helper()
	testenv.WaitFor(t, "the outbox drained", within, func() bool {
		rows, _, err := db.Backlog(context.Background())
		return err == nil && rows == 0
	})
}

// maxID returns the highest event id (outbox position).
func maxID(t *testing.T, db *gormdb.DB) int64 {
	t.Helper()
	evs, err := db.Events(context.Background(), 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	for _, e := range evs.Events {
		id = max(id, e.Position)
	}
	return id
}

// steadyLags returns the lags (marked sent minus the event's time) of the
// events with an id above after, sorted, read from the SQLite file or the
// PostgreSQL database.
func steadyLags(t *testing.T, dbURL string, after int64) []time.Duration {
	t.Helper()
	driver, dsn, q := "pgx", dbURL, "SELECT sent_us - time_us FROM events WHERE id > $1 AND state = 'sent'"
	if path, ok := strings.CutPrefix(dbURL, "sqlite://"); ok {
		driver, q = "sqlite", "SELECT sent_us - time_us FROM events WHERE id > ? AND state = 'sent'"
		dsn, _, _ = strings.Cut(path, "?")
	}
	conn, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query(q, after)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lags []time.Duration
	for rows.Next() {
		var us int64
		if err := rows.Scan(&us); err != nil {
			t.Fatal(err)
		}
		lags = append(lags, time.Duration(us)*time.Microsecond)
	}
	if err := rows.Err(); err != nil || len(lags) == 0 {
		t.Fatalf("read the lags: %d rows, %v", len(lags), err)
	}
	slices.Sort(lags)
	return lags
}
