package gormdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"github.com/flashorder/flashorder"
)

// This file is PostgreSQL's transaction of its own. InTx runs each
// transaction on one pooled connection, begun and ended by its own BEGIN and
// COMMIT instead of database/sql's, so that BEGIN can go out with the
// transaction's first statement and COMMIT with its last: pgx sends such a
// group as one pipeline, one round trip, each statement run only if the
// ones before it succeeded. The batch strategy's steps use it through
// flashorder.BatchTx (pipelineTx); every other statement goes through the
// connection one at a time, as on the other engines.

var _ flashorder.BatchTx = (*pipelineTx)(nil)

// rollbackTimeout bounds the ROLLBACK of a failed transaction, which runs
// even when the caller's context ended.
const rollbackTimeout = 5 * time.Second

// errAfterCommit is a statement sent after TakeStocksAndCommit committed:
// it would run outside the transaction.
var errAfterCommit = errors.New("gormdb: statement after the transaction committed")

// txConn is the connection of a transaction that InTx runs itself. It is
// GORM's connection pool and the bulk statements' sqlConn for the
// transaction: the first statement sent through it sends BEGIN first, unless
// a pipeline already carried it.
type txConn struct {
	conn *sql.Conn
	// begun is set once BEGIN was sent, alone or in a pipeline.
	begun bool
	// committed is set once a pipeline's COMMIT succeeded.
	committed bool
	// failed is a BEGIN that failed where no error could be returned
	// (QueryRowContext); InTx returns it.
	failed error
}

// ownTx runs fn in a transaction on a connection of its own (see txConn):
// it commits when fn returns nil, unless fn committed already, and rolls
// back otherwise. A connection whose transaction could not be ended is
// closed, never reused.
func (db *DB) ownTx(ctx context.Context, fn func(t *tx) error) (err error) {
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return fmt.Errorf("gormdb: begin: %w", err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("gormdb: begin: %w", err)
	}
	defer conn.Close()
	c := &txConn{conn: conn}
	defer func() {
		if p := recover(); p != nil {
			c.end(ctx, errors.New("gormdb: the transaction's function panicked"))
			panic(p)
		}
	}()
	g := db.gorm.WithContext(ctx).Session(&gorm.Session{})
	g.Statement.ConnPool = c
	err = fn(&tx{g: g, dialect: db.dialect, events: db.events, own: c})
	if err == nil {
		err = c.failed
	}
	return c.end(ctx, err)
}

// end commits the transaction when err is nil and rolls it back otherwise,
// and returns err or the commit's error.
func (c *txConn) end(ctx context.Context, err error) error {
	switch {
	case !c.begun || c.committed:
		return err
	case err == nil:
		if err := c.commit(ctx); err != nil {
			c.discard()
			return err
		}
		return nil
	default:
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		if _, rerr := c.conn.ExecContext(rctx, "ROLLBACK"); rerr != nil {
			c.discard()
		}
		return err
	}
}

// commit sends COMMIT alone. A transaction that a failed statement aborted
// answers it with ROLLBACK, which is an error here.
func (c *txConn) commit(ctx context.Context) error {
	return c.raw(func(pc *pgx.Conn) error {
		tag, err := pc.Exec(ctx, "COMMIT")
		if err != nil {
			return fmt.Errorf("gormdb: commit: %w", err)
		}
		if tag.String() != "COMMIT" {
			return fmt.Errorf("gormdb: commit: the transaction was rolled back (%s)", tag)
		}
		return nil
	})
}

// discard closes the connection instead of giving it back to the pool: its
// transaction may still be open.
func (c *txConn) discard() {
	_ = c.conn.Raw(func(any) error { return driver.ErrBadConn })
}

// raw runs fn on the connection's pgx connection.
func (c *txConn) raw(fn func(pc *pgx.Conn) error) error {
	return c.conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("gormdb: a %T is not a pgx connection", dc)
		}
		return fn(sc.Conn())
	})
}

// begin sends BEGIN unless it went out already.
func (c *txConn) begin(ctx context.Context) error {
	switch {
	case c.committed:
		return errAfterCommit
	case c.begun:
		return nil
	}
	c.begun = true
	if _, err := c.conn.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("gormdb: begin: %w", err)
	}
	return nil
}

// ExecContext implements sqlConn and gorm.ConnPool.
func (c *txConn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	return c.conn.ExecContext(ctx, query, args...)
}

// QueryContext implements sqlConn and gorm.ConnPool.
func (c *txConn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	return c.conn.QueryContext(ctx, query, args...)
}

// QueryRowContext implements gorm.ConnPool. A failed BEGIN fails the row
// with an ended context, and InTx returns the BEGIN's error.
func (c *txConn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if err := c.begin(ctx); err != nil {
		c.failed = err
		ended, cancel := context.WithCancel(ctx)
		cancel()
		ctx = ended
	}
	return c.conn.QueryRowContext(ctx, query, args...)
}

// PrepareContext implements gorm.ConnPool.
func (c *txConn) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	return c.conn.PrepareContext(ctx, query)
}

// pipeline sends b's statements as one pipeline, BEGIN first unless it went
// out already, and gives read the results, BEGIN's skipped. After a
// statement fails the server skips the rest of the pipeline: its error is
// the one read sees first.
func (c *txConn) pipeline(ctx context.Context, b *pgx.Batch, read func(br pgx.BatchResults) error) error {
	if c.committed {
		return errAfterCommit
	}
	begin := !c.begun
	if begin {
		b.QueuedQueries = slices.Insert(b.QueuedQueries, 0, &pgx.QueuedQuery{SQL: "BEGIN"})
		c.begun = true
	}
	return c.raw(func(pc *pgx.Conn) error {
		br := pc.SendBatch(ctx, b)
		err := func() error {
			if begin {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("gormdb: begin: %w", err)
				}
			}
			return read(br)
		}()
		if cerr := br.Close(); err == nil && cerr != nil {
			err = cerr
		}
		return err
	})
}

// pipelineTx is a tx on PostgreSQL: the batch strategy's steps go out as
// pipelines.
type pipelineTx struct {
	*tx
}

// limitedQuotas reads the counters of the pairs ($1 users, $2 SKUs) whose
// product has a per-user limit: the limited SKUs come from one initial
// subquery, so pairs of other products cost an array lookup, not a probe.
// Pipelined after the lock, it runs with a snapshot of its own taken after
// the lock was granted, so it reads the counters as committed by then.
const limitedQuotas = `SELECT p.user_id, p.sku, p.quantity FROM unnest($1::text[], $2::text[]) AS x(user_id, sku)
	CROSS JOIN LATERAL (SELECT user_id, sku, quantity FROM user_purchases AS q
		WHERE q.user_id = x.user_id AND q.sku = x.sku) AS p
	WHERE x.sku = ANY(ARRAY(SELECT sku FROM products WHERE sku = ANY($2::text[]) AND per_user_limit > 0))`

// ProductsAndQuotas implements flashorder.BatchTx: the products' SELECT (FOR
// UPDATE when lock is set) and the quotas' SELECT in one pipeline, with BEGIN
// before them when the transaction has not begun.
func (t *pipelineTx) ProductsAndQuotas(ctx context.Context, skus []string, keys []flashorder.QuotaKey, lock bool) (map[string]*flashorder.Product, map[flashorder.QuotaKey]int64, error) {
	products := make(map[string]*flashorder.Product, len(skus))
	held := make(map[flashorder.QuotaKey]int64)
	if len(skus) == 0 {
		return products, held, nil
	}
	var b pgx.Batch
	q, args := t.dialect.selectProducts(skus, lock)
	b.Queue(q, args...)
	if len(keys) > 0 {
		users, keySKUs := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			users[i], keySKUs[i] = k.UserID, k.SKU
		}
		b.Queue(limitedQuotas, users, keySKUs)
	}
	err := t.own.pipeline(ctx, &b, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err == nil {
			err = scanProducts(rows, products)
			rows.Close()
		}
		if err != nil {
			return fmt.Errorf("gormdb: read %d products: %w", len(skus), err)
		}
		if len(keys) == 0 {
			return nil
		}
		if rows, err = br.Query(); err == nil {
			err = scanQuotaRows(rows, held)
			rows.Close()
		}
		if err != nil {
			return fmt.Errorf("gormdb: read quotas: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for k := range held {
		// The quotas' statement read the limits with a snapshot of its
		// own: keep those the products as returned say are limited.
		if p := products[k.SKU]; p == nil || p.PerUserLimit <= 0 {
			delete(held, k)
		}
	}
	return products, held, nil
}

// takeStocksAndAddQuotas is TakeStocks' UPDATE and AddQuotas' upsert in one
// statement, which fails (division by zero) unless every row had the units,
// so that the COMMIT pipelined after it does not run.
var takeStocksAndAddQuotas = `WITH t AS (` + pgTakeStocks + ` RETURNING p.sku
	), a AS (` + pgAddQuotas(3) + `)
	SELECT 1 / (count(*) = cardinality($1::text[]))::int FROM t`

// TakeStocksAndCommit implements flashorder.BatchTx: one statement that
// takes the stock and adds the quotas, and COMMIT, in one pipeline.
func (t *pipelineTx) TakeStocksAndCommit(ctx context.Context, take map[string]int64, add map[flashorder.QuotaKey]int64) error {
	skus, qty := takeArrays(take)
	users, keySKUs, added := quotaArrays(sortedQuotaKeys(add), add)
	var b pgx.Batch
	b.Queue(takeStocksAndAddQuotas, skus, qty, users, keySKUs, added)
	b.Queue("COMMIT")
	return t.own.pipeline(ctx, &b, func(br pgx.BatchResults) error {
		var one int
		if err := br.QueryRow().Scan(&one); err != nil {
			if pgCode(err) == "22012" {
				// Not wrapped: the database refused no input of the
				// request, and the batch is not to be retried as is.
				return fmt.Errorf("gormdb: take stock of %d products: a row did not have the units (%v)", len(skus), err)
			}
			return fmt.Errorf("gormdb: take stock of %d products and add %d quotas: %w", len(skus), len(users), err)
		}
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("gormdb: commit: %w", err)
		}
		if tag.String() != "COMMIT" {
			return fmt.Errorf("gormdb: commit: the transaction was rolled back (%s)", tag)
		}
		t.own.committed = true
		return nil
	})
}
