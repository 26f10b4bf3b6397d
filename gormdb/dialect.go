package gormdb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/flashorder/flashorder"
)

// dialect is everything that differs between the engines, chosen once by
// Open from the URL's scheme: how to connect (DSN and session parameters) and
// size the pool, how to serialise a migration, which driver errors mean
// "retry" or "bad input", and the statements that have an engine's own form.
// The rest of the package is one body of SQL for every engine.
//
// PostgreSQL (dialect_postgres.go) runs the bulk statements on arrays
// unnested into rows; MySQL/MariaDB (dialect_mysql.go) and SQLite
// (dialect_sqlite.go) share multi-row VALUES lists (dialect_values.go),
// differing in a few clauses.
type dialect interface {
	// name is the engine: SQLite, Postgres or MySQL.
	name() string
	// open connects with the DSN and session parameters that the URL and
	// Options gave when the dialect was chosen.
	open(cfg *gorm.Config) (*gorm.DB, error)
	// configurePool sizes the connection pool.
	configurePool(sqlDB *sql.DB, opts Options)
	// lockMigration takes a connection of sqlDB that holds a database-wide
	// lock serialising schema migrations, and the func that releases both;
	// a nil connection when the engine needs none.
	lockMigration(ctx context.Context, sqlDB *sql.DB) (*sql.Conn, func(), error)
	// tableOptions are the options of the tables the migration creates;
	// empty for none.
	tableOptions() string
	// readTxOptions are the options of readTx's snapshot transaction.
	readTxOptions() *sql.TxOptions
	// pipelines reports whether InTx runs the engine's transactions itself
	// on one connection (pipeline_postgres.go), so that BEGIN and COMMIT
	// go out in pipelines with other statements: PostgreSQL through pgx.
	pipelines() bool
	// rowLocks reports whether the engine locks rows (FOR UPDATE, SKIP
	// LOCKED). SQLite has none and needs none: its one connection
	// serialises transactions.
	rowLocks() bool
	// param is the n-th bind parameter (from 1) of a statement run on
	// database/sql directly, past GORM's rewriting.
	param(n int) string

	// retryable reports whether the database aborted a transaction that
	// would succeed when run again.
	retryable(err error) bool
	// lockWaitTimedOut reports whether err is a statement that gave up
	// waiting for a lock (Options.LockTimeout).
	lockWaitTimedOut(err error) bool
	// refusedInput reports whether the database refused a value of the
	// request (a data exception) rather than failed to answer.
	refusedInput(err error) bool
	// readOnly reports whether the server refused a write because it is
	// not (or no longer) the primary.
	readOnly(err error) bool
	// writesTo implements DB.WritesTo.
	writesTo(ctx context.Context, db *DB) (string, bool, error)
	// waitDurable implements DB.WaitDurable.
	waitDurable(ctx context.Context, db *DB) error

	// selectProducts returns the query of readProducts: productColumns of
	// the products among skus, in SKU byte order, their rows locked when
	// lock is set and the engine has row locks.
	selectProducts(skus []string, lock bool) (string, []any)
	// takeStocks returns the one UPDATE of TakeStocks: qty[i] units off
	// skus[i], sorted, where the stock has them.
	takeStocks(skus []string, qty []int64) (string, []any)
	// quotas adds to m what each pair of keys holds (Tx.Quotas).
	quotas(ctx context.Context, c sqlConn, m map[flashorder.QuotaKey]int64, keys []flashorder.QuotaKey) error
	// addQuotas adds add[k] to the counter of every k in keys, sorted, with
	// an upsert (Tx.AddQuotas).
	addQuotas(ctx context.Context, c sqlConn, keys []flashorder.QuotaKey, add map[flashorder.QuotaKey]int64) error
	// insertOrders inserts rows, skipping those whose key is taken, and the
	// items of those that went in, and returns the ids that went in.
	insertOrders(ctx context.Context, c sqlConn, rows []orderRow, items []orderItemRow) (map[string]bool, error)
	// idIn returns the condition "is one of ids" on a column, to follow
	// the column's name, and its arguments.
	idIn(ids []string) (string, []any)
	// insertEvents inserts rows, at least one, into the outbox.
	insertEvents(ctx context.Context, c sqlConn, rows []eventRow) error
	// deleteFirst returns a DELETE of the first rows of table, by id, that
	// match where: at most the statement's last parameter.
	deleteFirst(table, where string) string
}

// newDialect chooses the dialect of the database URL rawURL and prepares
// its connection settings from the URL and opts.
func newDialect(rawURL string, opts Options) (dialect, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("gormdb: database URL: %w", err)
	}
	switch u.Scheme {
	case SQLite:
		return newSQLiteDialect(rawURL, u)
	case Postgres, "postgresql":
		return newPostgresDialect(u, opts), nil
	case MySQL, "mariadb":
		return newMySQLDialect(u, opts), nil
	default:
		return nil, fmt.Errorf("gormdb: unsupported database URL scheme %q (want sqlite, postgres or mysql)", u.Scheme)
	}
}

// sqlConn is a transaction's database/sql handle: the bulk statements run on
// it past GORM's reflection.
type sqlConn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// serverEngine is what the client-server engines, PostgreSQL and MySQL,
// share: a pool of many connections, row locks, and snapshot reads at
// REPEATABLE READ.
type serverEngine struct{}

func (serverEngine) configurePool(sqlDB *sql.DB, opts Options) {
	n := opts.MaxConns
	if n <= 0 {
		n = DefaultMaxConns
	}
	sqlDB.SetMaxOpenConns(n)
	sqlDB.SetMaxIdleConns(n)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
}

func (serverEngine) readTxOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

func (serverEngine) rowLocks() bool { return true }

// migrateLockKey names the database lock that serialises schema migrations.
const migrateLockKey = 0x666c6173686f72 // "flashor"

// lockedConn takes one connection of sqlDB for engine's migration and runs
// lock on it, which takes the migration lock and returns what releases it.
// The func lockedConn returns releases the lock and gives the connection
// back to the pool.
func lockedConn(ctx context.Context, sqlDB *sql.DB, engine string, lock func(conn *sql.Conn) (unlock func(), err error)) (*sql.Conn, func(), error) {
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("gormdb: migrate %s schema: %w", engine, err)
	}
	unlock, err := lock(conn)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, func() {
		// The lock dies with the connection in any case; unlock so that
		// the connection goes back to the pool clean.
		unlock()
		conn.Close()
	}, nil
}

// deleteFirstBySubquery is deleteFirst for the engines that take LIMIT in a
// subquery (PostgreSQL, SQLite).
func deleteFirstBySubquery(table, where string) string {
	return "DELETE FROM " + table + " WHERE id IN (SELECT id FROM " + table + " WHERE " + where + " ORDER BY id LIMIT ?)"
}

// wholeSeconds returns d in whole seconds, rounded up and at least 1, for
// the settings that take no finer unit.
func wholeSeconds(d time.Duration) string {
	return strconv.FormatInt(int64(max(1, (d+time.Second-1)/time.Second)), 10)
}

// connectTimeout returns ConnectTimeout or its default.
func (o Options) connectTimeout() time.Duration {
	if o.ConnectTimeout <= 0 {
		return DefaultConnectTimeout
	}
	return o.ConnectTimeout
}

// bulkRows bounds the rows of one multi-row VALUES statement: 500 rows of the
// widest table (8 columns) stay far below every engine's limit on bound
// parameters.
const bulkRows = 500

// placeholders returns "(?,?),(?,?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	var b strings.Builder
	b.Grow(rows * (2*cols + 2))
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('?')
		}
		b.WriteByte(')')
	}
	return b.String()
}

// inList returns "?,?,?" for n values.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// stringArgs returns ss as statement arguments.
func stringArgs(ss []string) []any {
	args := make([]any, len(ss))
	for i, s := range ss {
		args[i] = s
	}
	return args
}
