package gormdb

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// roundTrips records what a PostgreSQL connection sends, one entry per round
// trip: a statement sent alone (pgx's Exec or Query, which database/sql's
// calls become) or a pipeline (pgx's SendBatch), its statements joined by
// " | ". Connection checks (ResetSession's ping) bypass the tracer.
type roundTrips struct {
	mu    sync.Mutex
	trips []string
}

func (r *roundTrips) add(s string) {
	r.mu.Lock()
	r.trips = append(r.trips, s)
	r.mu.Unlock()
}

// take returns the round trips recorded since the last take.
func (r *roundTrips) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	trips := r.trips
	r.trips = nil
	return trips
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	r.add(statementName(data.SQL))
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	names := make([]string, len(data.Batch.QueuedQueries))
	for i, q := range data.Batch.QueuedQueries {
		names[i] = statementName(q.SQL)
	}
	r.add(strings.Join(names, " | "))
	return ctx
}

func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// statementName shortens a statement to what tells it apart in the batch
// transaction: its first words, and FOR UPDATE when it locks.
func statementName(sql string) string {
	name := strings.Join(strings.Fields(sql), " ")
	if i := strings.Index(name, " FROM "); i > 0 && strings.HasPrefix(name, "SELECT") {
		name = name[:i]
	}
	name = strings.TrimPrefix(name, "SELECT sku, name, price_cents, stock, restocked, per_user_limit, starts_us, ends_us, payment_window_s")
	switch {
	case name == "":
		name = "products"
	case strings.HasPrefix(name, "SELECT p.user_id"):
		name = "quotas"
	case strings.HasPrefix(name, "WITH o AS"):
		name = "orders+items"
	case strings.HasPrefix(name, "WITH t AS"):
		name = "stock+quotas"
	case strings.HasPrefix(name, "INSERT INTO events"):
		name = "events"
	case strings.HasPrefix(name, "INSERT INTO user_purchases"):
		name = "add quotas"
	case strings.HasPrefix(name, "UPDATE products AS p SET stock"):
		name = "take stock"
	case len(name) > 40:
		name = name[:40]
	}
	if strings.HasSuffix(strings.TrimSpace(sql), "FOR UPDATE") {
		name += " FOR UPDATE"
	}
	return name
}

// openTraced opens a fresh PostgreSQL database with one connection whose
// round trips rec records.
func openTraced(t *testing.T, rec *roundTrips, opts Options) *DB {
	t.Helper()
	server := testenv.Service(t, "FLASHORDER_TEST_POSTGRES_URL")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL, err := testenv.CreateDatabase(ctx, server, "fo_test_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := testenv.DropDatabase(ctx, server, dbURL); err != nil {
			t.Log(err)
		}
	})
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxConns = 1
	d := newPostgresDialect(u, opts)
	d.tracer = rec
	db, err := openDialect(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestBatchRoundTrips counts the round trips of one batch transaction on
// PostgreSQL, for a product without a limit (the hot scenario) and one with
// a per-user limit (the sale), events off and on: BEGIN goes out with the
// first read, the quotas with the reads, and the take of stock and quotas
// with the COMMIT, which is the only round trip after the lock's. A Tx
// without flashorder.BatchTx (the other engines' path) sends one statement
// at a time, as every engine did before: 6 and 9 round trips, 2 and 4 of
// them after the lock's.
func TestBatchRoundTrips(t *testing.T) {
	hot := []string{
		"BEGIN | products | quotas",
		"orders+items",
		"products FOR UPDATE | quotas",
		"stock+quotas | COMMIT",
	}
	withEvents := []string{hot[0], hot[1], "events", hot[2], hot[3]}
	oneByOne := []string{"BEGIN", "products", "orders+items", "products FOR UPDATE", "take stock", "COMMIT"}
	oneByOneLimited := []string{"BEGIN", "products", "quotas", "orders+items", "products FOR UPDATE", "quotas", "take stock", "add quotas", "COMMIT"}
	for _, tt := range []struct {
		name     string
		events   bool
		limit    int64
		oneByOne bool
		want     []string
	}{
		{"hot", false, 0, false, hot},
		{"sale", false, 2, false, hot},
		{"hot-events", true, 0, false, withEvents},
		{"sale-events", true, 2, false, withEvents},
		{"hot-one-by-one", false, 0, true, oneByOne},
		{"sale-one-by-one", false, 2, true, oneByOneLimited},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			rec := &roundTrips{}
			db := openTraced(t, rec, Options{Events: tt.events})
			if _, err := db.PutProduct(ctx, flashorder.Product{SKU: "rt", Name: "x", PriceCents: 5, Stock: 100, PerUserLimit: tt.limit}); err != nil {
				t.Fatal(err)
			}
			var store flashorder.Store = db
			if tt.oneByOne {
				store = oneByOneStore{db}
			}
			b := checkout.NewBatch(store, checkout.BatchOptions{Pipeline: 1})
			// The first order prepares the statements on the connection
			// (one more round trip each, once); the second is counted.
			for i := range 2 {
				rec.take()
				req := flashorder.OrderRequest{UserID: fmt.Sprintf("u-%d", i), Items: []flashorder.ItemRequest{{SKU: "rt", Quantity: 1}}}
				if _, err := b.PlaceOrder(ctx, &flashorder.PlaceOrderRequest{OrderRequest: req, Fingerprint: req.Fingerprint()}); err != nil {
					t.Fatal(err)
				}
			}
			got := rec.take()
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("round trips of one batch:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if p, err := db.Product(ctx, "rt"); err != nil || p.Stock != 98 {
				t.Fatalf("stock after two orders: %+v %v", p, err)
			}
			if tt.limit > 0 {
				held, err := db.QuotaHolders(ctx, "rt", 10)
				if err != nil || len(held) != 2 || held["u-0"] != 1 || held["u-1"] != 1 {
					t.Fatalf("quotas after two orders: %v %v", held, err)
				}
			}
		})
	}
}

// TestTakeStocksAndCommitFails: when the stock to take is not there, the
// pipelined statement fails, the COMMIT after it does not run, and nothing
// of the transaction stays, not even what was written before it.
func TestTakeStocksAndCommitFails(t *testing.T) {
	ctx := context.Background()
	db := openTraced(t, &roundTrips{}, Options{})
	for _, sku := range []string{"a", "b"} {
		if _, err := db.PutProduct(ctx, flashorder.Product{SKU: sku, Name: "x", PriceCents: 5, Stock: 3, PerUserLimit: 5}); err != nil {
			t.Fatal(err)
		}
	}
	err := db.InTx(ctx, func(ftx flashorder.Tx) error {
		bt, ok := ftx.(flashorder.BatchTx)
		if !ok {
			return errors.New("a PostgreSQL Tx is not a flashorder.BatchTx")
		}
		if _, _, err := bt.ProductsAndQuotas(ctx, []string{"a", "b"}, nil, true); err != nil {
			return err
		}
		if err := ftx.ReturnStock(ctx, "a", 10); err != nil {
			return err
		}
		return bt.TakeStocksAndCommit(ctx, map[string]int64{"a": 1, "b": 4}, map[flashorder.QuotaKey]int64{{UserID: "u", SKU: "a"}: 1})
	})
	if flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE || !strings.Contains(err.Error(), "did not have the units") {
		t.Fatalf("taking 4 of 3: %v, want unavailable: a row did not have the units", err)
	}
	for _, sku := range []string{"a", "b"} {
		if p, err := db.Product(ctx, sku); err != nil || p.Stock != 3 {
			t.Fatalf("%s after the failed transaction: %+v %v, want stock 3", sku, p, err)
		}
	}
	if held, err := db.QuotaHolders(ctx, "a", 10); err != nil || len(held) != 0 {
		t.Fatalf("quotas after the failed transaction: %v %v, want none", held, err)
	}
	// The connection went back to the pool clean: the next transaction
	// on it commits.
	if err := db.InTx(ctx, func(ftx flashorder.Tx) error {
		return ftx.(flashorder.BatchTx).TakeStocksAndCommit(ctx, map[string]int64{"b": 3}, nil)
	}); err != nil {
		t.Fatal(err)
	}
	if p, err := db.Product(ctx, "b"); err != nil || p.Stock != 0 {
		t.Fatalf("b after taking 3: %+v %v, want stock 0", p, err)
	}
}

// oneByOneStore hides flashorder.BatchTx from the strategy.
type oneByOneStore struct{ *DB }

func (s oneByOneStore) InTx(ctx context.Context, fn func(flashorder.Tx) error) error {
	return s.DB.InTx(ctx, func(tx flashorder.Tx) error { return fn(struct{ flashorder.Tx }{tx}) })
}
