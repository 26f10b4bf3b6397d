// Package gormdb implements flashorder.Store on GORM for three engines: SQLite
// (pure Go, the embedded default), PostgreSQL (pgx) and MySQL/MariaDB. The
// engines share one schema (schema.go) and most statements. What differs is
// one dialect value, chosen in Open (dialect.go and one file per engine):
// connection settings, pool size, the migration lock, table options, which
// errors are retried, and the bulk statements of the group-commit path
// (arrays on PostgreSQL, multi-row VALUES elsewhere, each engine's upsert).
//
// The transaction primitives (flashorder.Tx) are filed by the group they
// implement: product.go, stock.go, segment.go, quota.go, order.go,
// lifecycle.go and fence.go; the outbox is events.go. On PostgreSQL InTx
// runs its own BEGIN and COMMIT, and the batch strategy's steps go out as
// pgx pipelines (pipeline_postgres.go, flashorder.BatchTx).
package gormdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/flashorder/flashorder"
)

var _ flashorder.Store = (*DB)(nil)

// Engine names, as the scheme of the database URL.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
	MySQL    = "mysql"
)

// DefaultMaxConns is the default connection pool size for PostgreSQL and MySQL.
// SQLite always uses one connection: it has one writer, and a single
// connection avoids busy-waiting on its file lock.
const DefaultMaxConns = 64

// maxTxAttempts bounds how often InTx runs a transaction that the database
// aborted as a deadlock or serialization victim.
const maxTxAttempts = 4

// maxLockWaitAttempts bounds how often InTx runs a transaction whose
// statement gave up waiting for a lock (Options.LockTimeout); the caller's
// context bounds it too, and usually first.
const maxLockWaitAttempts = 30

// DB is a flashorder.Store on a GORM database.
type DB struct {
	gorm    *gorm.DB
	dialect dialect
	events  bool
}

// Options tunes Open.
type Options struct {
	// MaxConns is the connection pool size for PostgreSQL and MySQL; the
	// default is DefaultMaxConns.
	MaxConns int
	// IdleTxTimeout, when set, makes the database end any session of this
	// store that sits idle inside a transaction for longer (PostgreSQL's
	// idle_in_transaction_session_timeout; MariaDB's
	// idle_transaction_timeout, in whole seconds; MySQL and SQLite have
	// none): a frozen or cut-off orderd
	// then loses its row locks after this long instead of stopping every
	// other instance's orders for as long as it stays frozen. Its own
	// transaction fails and nothing of it commits.
	IdleTxTimeout time.Duration
	// LockTimeout, when set, bounds how long one statement waits for a row
	// lock (PostgreSQL's lock_timeout; innodb_lock_wait_timeout on
	// MySQL/MariaDB, in whole seconds). A transaction that gives up is run
	// again by InTx for as long as the caller's context lasts. Keep it below
	// IdleTxTimeout: the sessions of a frozen orderd that were waiting for
	// a row then give up before the database frees the row from the frozen
	// holder, instead of being granted it one after another, each holding it
	// frozen until its own idle timeout.
	LockTimeout time.Duration
	// KeepAlive, when set, makes PostgreSQL probe an idle client connection
	// after this long (tcp_keepalives_idle, then 3 probes KeepAlive/3
	// apart) and drop one whose sent data stays unacknowledged for as long
	// (tcp_user_timeout): a cut-off orderd's sessions end on their own.
	KeepAlive time.Duration
	// ConnectTimeout bounds how long opening one connection may take
	// (PostgreSQL's connect_timeout, MySQL's timeout): a database host that
	// vanished is noticed instead of hanging the request that needed a
	// connection. Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Events, when set, makes every change of an order write its event to
	// the outbox (the events table) in the transaction that makes the
	// change, for orderd's relay to publish (--events). Off by default:
	// then nothing is written.
	Events bool
}

// DefaultConnectTimeout is Options.ConnectTimeout's default.
const DefaultConnectTimeout = 5 * time.Second

// Open connects to the database named by rawURL, creates or updates the schema,
// and returns the store. URLs:
//
//	sqlite://relative/path.db  sqlite:///absolute/path.db
//	postgres://user:pass@host:port/db?sslmode=disable
//	mysql://user:pass@host:port/db
func Open(ctx context.Context, rawURL string, opts Options) (*DB, error) {
	d, err := newDialect(rawURL, opts)
	if err != nil {
		return nil, err
	}
	return openDialect(ctx, d, opts)
}

// openDialect is Open with the dialect chosen.
func openDialect(ctx context.Context, d dialect, opts Options) (*DB, error) {
	g, err := d.open(&gorm.Config{
		SkipDefaultTransaction: true,
		TranslateError:         true,
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("gormdb: open %s: %w", d.name(), err)
	}
	sqlDB, err := g.DB()
	if err != nil {
		return nil, fmt.Errorf("gormdb: open %s: %w", d.name(), err)
	}
	d.configurePool(sqlDB, opts)
	db := &DB{gorm: g, dialect: d, events: opts.Events}
	if err := db.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	return db, nil
}

// Engine returns the engine name: SQLite, Postgres or MySQL.
func (db *DB) Engine() string { return db.dialect.name() }

// Close closes the connection pool.
func (db *DB) Close() error {
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Ping implements flashorder.Store.
func (db *DB) Ping(ctx context.Context) error {
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return err
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("gormdb: ping: %w", err)
	}
	return nil
}

// Exec runs a raw statement; tests and tools use it for setup.
func (db *DB) Exec(ctx context.Context, sql string, args ...any) error {
	return db.gorm.WithContext(ctx).Exec(sql, args...).Error
}

// migrate creates or updates the schema. Instances that start together on one
// database would race in AutoMigrate (both see no table, both create it, one
// fails), so on PostgreSQL and MySQL it runs on one connection that holds a
// database-wide lock (the dialect's lockMigration) for the migration.
func (db *DB) migrate(ctx context.Context) error {
	engine := db.dialect.name()
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return fmt.Errorf("gormdb: migrate %s schema: %w", engine, err)
	}
	conn, release, err := db.dialect.lockMigration(ctx, sqlDB)
	if err != nil {
		return err
	}
	g := db.gorm.WithContext(ctx)
	if conn != nil {
		defer release()
		g = g.Session(&gorm.Session{})
		g.Statement.ConnPool = conn
	}
	if opts := db.dialect.tableOptions(); opts != "" {
		g = g.Set("gorm:table_options", opts)
	}
	if err := g.AutoMigrate(&productRow{}, &orderRow{}, &orderItemRow{}, &userPurchaseRow{}, &segmentRow{}, &eventRow{}); err != nil {
		return fmt.Errorf("gormdb: migrate %s schema: %w", engine, err)
	}
	return nil
}

// InTx implements flashorder.Store. On PostgreSQL its Tx is also a
// flashorder.BatchTx (see pipeline_postgres.go).
func (db *DB) InTx(ctx context.Context, fn func(tx flashorder.Tx) error) error {
	return db.inTx(ctx, func(t *tx) error {
		if t.own != nil {
			return fn(&pipelineTx{tx: t})
		}
		return fn(t)
	})
}

// inTx is InTx for the package's own transactions, fn taking the tx itself.
func (db *DB) inTx(ctx context.Context, fn func(t *tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if db.dialect.pipelines() {
			err = db.ownTx(ctx, fn)
		} else {
			err = db.gorm.WithContext(ctx).Transaction(func(g *gorm.DB) error {
				return fn(&tx{g: g, dialect: db.dialect, events: db.events})
			})
		}
		if err == nil || !db.dialect.retryable(err) || ctx.Err() != nil {
			break
		}
		if attempt >= maxTxAttempts && (!db.dialect.lockWaitTimedOut(err) || attempt >= maxLockWaitAttempts) {
			break
		}
		time.Sleep(time.Duration(attempt) * time.Millisecond)
	}
	return db.translate(err)
}

// readTx runs fn in a read-only transaction that sees one snapshot.
func (db *DB) readTx(ctx context.Context, fn func(g *gorm.DB) error) error {
	return db.translate(db.gorm.WithContext(ctx).Transaction(fn, db.dialect.readTxOptions()))
}

// translate turns driver errors into domain errors at the store's boundary.
// Domain errors pass through; a database that failed to answer becomes
// EUNAVAILABLE, so that the client retries instead of seeing internals.
func (db *DB) translate(err error) error {
	var ferr *flashorder.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ferr), errors.Is(err, flashorder.ErrIdempotencyKeyTaken):
		return err
	case errors.Is(err, gorm.ErrRecordNotFound):
		return &flashorder.Error{Code: flashorder.ENOTFOUND, Message: "not found", Err: err}
	case db.dialect.readOnly(err):
		return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the database server is no longer the primary (failover); retry", Err: err}
	case db.dialect.refusedInput(err):
		// The request carried a value the database cannot hold (a NUL,
		// bytes that are not UTF-8): retrying will not help, and it is
		// not the database's failure.
		return &flashorder.Error{Code: flashorder.EINVALID, Message: "the request holds a value the database cannot store", Err: err}
	default:
		return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the database did not complete the request; retry later", Err: err}
	}
}
