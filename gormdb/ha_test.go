package gormdb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestReadOnlyNodeIsUnavailable writes through a store whose URL names only a
// standby of the Patroni cluster, as a pool would that still held a
// connection to a demoted primary: the write is refused with SQLSTATE 25006,
// which the store answers as unavailable (503, retry), and the connection is
// closed rather than given back to the pool. Through the multi-host URL the
// store writes to the primary and says so (WritesTo).
func TestReadOnlyNodeIsUnavailable(t *testing.T) {
	multi := testenv.PatroniURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// pgx stops at a host that lacks the database (3D000) instead of trying
	// the next one: wait until the asynchronous replica has replayed the
	// CREATE DATABASE.
	var primary *gormdb.DB
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; {
		if primary, err = gormdb.Open(ctx, multi, gormdb.Options{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer primary.Close()
	addr, writable, err := primary.WritesTo(ctx)
	if err != nil || !writable {
		t.Fatalf("WritesTo through the multi-host URL: %q, writable %v, %v; want the primary", addr, writable, err)
	}
	if _, err := primary.PutProduct(ctx, flashorder.Product{SKU: "ro-1", Name: "x", PriceCents: 1, Stock: 10}); err != nil {
		t.Fatal(err)
	}

	u, err := url.Parse(multi)
	if err != nil {
		t.Fatal(err)
	}
	app := fmt.Sprintf("fo-readonly-%d", time.Now().UnixNano())
	var standby *url.URL
	for _, h := range strings.Split(u.Host, ",") {
		if h == addr {
			continue
		}
		s := *u
		s.Host = h
		q := s.Query()
		q.Del("target_session_attrs")
		q.Set("application_name", app)
		s.RawQuery = q.Encode()
		standby = &s
		break
	}
	if standby == nil {
		t.Fatalf("no standby among %s (primary %s)", u.Host, addr)
	}
	// The replica may lag a moment behind the schema and the product.
	var st *gormdb.DB
	for deadline := time.Now().Add(20 * time.Second); ; {
		st, err = gormdb.Open(ctx, standby.String(), gormdb.Options{MaxConns: 1})
		if err == nil {
			if _, err = st.Product(ctx, "ro-1"); err == nil {
				break
			}
			st.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("open the standby %s: %v", standby.Host, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer st.Close()
	if _, w, err := st.WritesTo(ctx); err != nil || w {
		t.Fatalf("WritesTo on the standby: writable %v, %v; want a standby", w, err)
	}

	err = st.InTx(ctx, func(tx flashorder.Tx) error { return tx.TakeStocks(ctx, map[string]int64{"ro-1": 1}) })
	if flashorder.ErrorCode(err) != flashorder.EUNAVAILABLE || !gormdb.ReadOnly(errors.Unwrap(err)) {
		t.Fatalf("a write on the standby: %v; want unavailable from SQLSTATE 25006", err)
	}
	// The connection that met 25006 is closed: the standby soon has no
	// session of this store left (it would keep one idle in its pool).
	check, err := sql.Open("pgx", standby.String())
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	check.SetMaxOpenConns(1)
	var n int
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := check.QueryRowContext(ctx, "SELECT count(*) - 1 FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions of the store are still open on the standby after the read-only error", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p, err := primary.Product(ctx, "ro-1")
	if err != nil || p.Stock != 10 {
		t.Fatalf("stock on the primary: %+v, %v; want 10 untouched", p, err)
	}
}
