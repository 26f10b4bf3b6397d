// Package gormdb implements flashorder.Store on GORM for three engines: SQLite
// (pure Go, the embedded default), PostgreSQL (pgx) and MySQL/MariaDB. The
// engines share one schema and most queries. Where they differ: connection
// settings, pool size, table options and retryable error codes in db.go; the
// bulk statements of the group-commit path (arrays on PostgreSQL, multi-row
// VALUES elsewhere, each engine's upsert) in bulk.go; SKIP LOCKED, which
// SQLite lacks, in segments.go.
package gormdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
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
	gorm   *gorm.DB
	engine string
	events bool
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
	engine, dialector, err := dialectorFor(rawURL, opts)
	if err != nil {
		return nil, err
	}
	gormConfig := &gorm.Config{
		SkipDefaultTransaction: true,
		TranslateError:         true,
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	}
	g, err := gorm.Open(dialector, gormConfig)
	isolationVar := "transaction_isolation"
	var myErr *mysql.MySQLError
	if engine == MySQL && errors.As(err, &myErr) && myErr.Number == 1193 { // unknown system variable
		u, _ := url.Parse(rawURL)
		setMySQLDefaults(u, opts)
		isolationVar = "tx_isolation"
		g, err = gorm.Open(gormmysql.Open(MySQLDSN(u, isolationVar)), gormConfig)
	}
	if err == nil && engine == MySQL && opts.IdleTxTimeout > 0 {
		g, err = withMariaDBIdleTimeout(g, rawURL, isolationVar, opts, gormConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("gormdb: open %s: %w", engine, err)
	}
	sqlDB, err := g.DB()
	if err != nil {
		return nil, fmt.Errorf("gormdb: open %s: %w", engine, err)
	}
	if engine == SQLite {
		sqlDB.SetMaxOpenConns(1)
	} else {
		n := opts.MaxConns
		if n <= 0 {
			n = DefaultMaxConns
		}
		sqlDB.SetMaxOpenConns(n)
		sqlDB.SetMaxIdleConns(n)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	}
	db := &DB{gorm: g, engine: engine, events: opts.Events}
	if err := db.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	return db, nil
}

// Engine returns the engine name: SQLite, Postgres or MySQL.
func (db *DB) Engine() string { return db.engine }

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

// migrateLockKey names the database lock that serialises schema migrations.
const migrateLockKey = 0x666c6173686f72 // "flashor"

// migrate creates or updates the schema. Instances that start together on one
// database would race in AutoMigrate (both see no table, both create it, one
// fails), so on PostgreSQL and MySQL it runs on one connection that holds a
// database-wide lock (pg_advisory_lock, GET_LOCK) for the migration.
func (db *DB) migrate(ctx context.Context) error {
	g := db.gorm.WithContext(ctx)
	if db.engine != SQLite {
		sqlDB, err := db.gorm.DB()
		if err != nil {
			return fmt.Errorf("gormdb: migrate %s schema: %w", db.engine, err)
		}
		conn, err := sqlDB.Conn(ctx)
		if err != nil {
			return fmt.Errorf("gormdb: migrate %s schema: %w", db.engine, err)
		}
		defer conn.Close()
		lock, unlock := "SELECT pg_advisory_lock($1)", "SELECT pg_advisory_unlock($1)"
		if db.engine == MySQL {
			lock, unlock = "SELECT GET_LOCK(CONCAT('flashorder-migrate-', ?), 60)", "SELECT RELEASE_LOCK(CONCAT('flashorder-migrate-', ?))"
		}
		if db.engine == MySQL {
			var got sql.NullInt64
			if err := conn.QueryRowContext(ctx, lock, migrateLockKey).Scan(&got); err != nil {
				return fmt.Errorf("gormdb: lock for the %s migration: %w", db.engine, err)
			}
			if got.Int64 != 1 {
				return fmt.Errorf("gormdb: lock for the %s migration: not granted within 60s", db.engine)
			}
		} else {
			// Another instance may migrate for longer than --db-lock-timeout:
			// wait for it (and let the DDL wait for its locks) without one.
			if _, err := conn.ExecContext(ctx, "SET lock_timeout = 0"); err != nil {
				return fmt.Errorf("gormdb: migrate %s schema: %w", db.engine, err)
			}
			defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), "SET lock_timeout TO DEFAULT") }()
			if _, err := conn.ExecContext(ctx, lock, migrateLockKey); err != nil {
				return fmt.Errorf("gormdb: lock for the %s migration: %w", db.engine, err)
			}
		}
		// The lock dies with the connection in any case; unlock so that the
		// connection goes back to the pool clean.
		defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), unlock, migrateLockKey) }()
		g = g.Session(&gorm.Session{})
		g.Statement.ConnPool = conn
	}
	if db.engine == MySQL {
		// A binary collation: SKUs and user ids are case-sensitive.
		g = g.Set("gorm:table_options", "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
	}
	if err := g.AutoMigrate(&productRow{}, &orderRow{}, &orderItemRow{}, &userPurchaseRow{}, &segmentRow{}, &eventRow{}); err != nil {
		return fmt.Errorf("gormdb: migrate %s schema: %w", db.engine, err)
	}
	return nil
}

func dialectorFor(rawURL string, opts Options) (string, gorm.Dialector, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", nil, fmt.Errorf("gormdb: database URL: %w", err)
	}
	switch u.Scheme {
	case SQLite:
		path := strings.TrimPrefix(rawURL, "sqlite://")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if path == "" {
			return "", nil, fmt.Errorf("gormdb: sqlite URL %q names no file", rawURL)
		}
		// synchronous=FULL, the default, makes every commit durable before
		// the order is answered; ?synchronous=normal trades the last
		// commits on power loss for speed (tests use it).
		sync := strings.ToUpper(u.Query().Get("synchronous"))
		switch sync {
		case "":
			sync = "FULL"
		case "OFF", "NORMAL", "FULL", "EXTRA":
		default:
			return "", nil, fmt.Errorf("gormdb: sqlite synchronous=%q: want off, normal, full or extra", sync)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", nil, fmt.Errorf("gormdb: create sqlite directory: %w", err)
		}
		// WAL lets readers run beside the writer. Transactions begin
		// IMMEDIATE, taking the write lock at BEGIN under busy_timeout: a
		// deferred one that read first cannot upgrade to a writer while
		// another process (a second orderd on the file) wrote meanwhile,
		// and fails with SQLITE_BUSY at once, without waiting.
		dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")&_pragma=busy_timeout(10000)&_txlock=immediate"
		return SQLite, sqlite.Open(dsn), nil
	case Postgres, "postgresql":
		// Session settings go in the startup message (pgx passes unknown
		// URL parameters on as run-time parameters); the URL's own win.
		q := u.Query()
		for k, v := range postgresSessionParams(opts) {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
		return Postgres, postgres.New(postgres.Config{DSN: u.String(), OptionOpenDB: haOptions()}), nil
	case MySQL, "mariadb":
		setMySQLDefaults(u, opts)
		return MySQL, gormmysql.Open(MySQLDSN(u, "transaction_isolation")), nil
	default:
		return "", nil, fmt.Errorf("gormdb: unsupported database URL scheme %q (want sqlite, postgres or mysql)", u.Scheme)
	}
}

// postgresSessionParams returns the connection parameters that carry opts:
// connect_timeout for pgx, the rest as run-time parameters of every session.
func postgresSessionParams(opts Options) map[string]string {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	secs := func(d time.Duration) string {
		return strconv.FormatInt(int64(max(1, (d+time.Second-1)/time.Second)), 10)
	}
	connect := opts.ConnectTimeout
	if connect <= 0 {
		connect = DefaultConnectTimeout
	}
	p := map[string]string{"connect_timeout": secs(connect)}
	if opts.IdleTxTimeout > 0 {
		p["idle_in_transaction_session_timeout"] = ms(opts.IdleTxTimeout)
	}
	if opts.LockTimeout > 0 {
		p["lock_timeout"] = ms(opts.LockTimeout)
	}
	if ka := opts.KeepAlive; ka > 0 {
		p["tcp_keepalives_idle"] = secs(ka)
		p["tcp_keepalives_interval"] = secs(ka / 3)
		p["tcp_keepalives_count"] = "3"
		p["tcp_user_timeout"] = ms(ka)
	}
	return p
}

// setMySQLDefaults adds opts to a mysql:// URL's parameters where the URL
// does not set them: the dial timeout and the session's lock wait timeout.
func setMySQLDefaults(u *url.URL, opts Options) {
	q := u.Query()
	connect := opts.ConnectTimeout
	if connect <= 0 {
		connect = DefaultConnectTimeout
	}
	if !q.Has("timeout") {
		q.Set("timeout", connect.String())
	}
	if opts.LockTimeout > 0 && !q.Has("innodb_lock_wait_timeout") {
		q.Set("innodb_lock_wait_timeout", strconv.FormatInt(int64(max(1, (opts.LockTimeout+time.Second-1)/time.Second)), 10))
	}
	u.RawQuery = q.Encode()
}

// withMariaDBIdleTimeout reopens g, a MySQL-protocol database, with MariaDB's
// idle_transaction_timeout (whole seconds, at least 1) when the server is
// MariaDB; MySQL has no such variable, and g stays as it is.
func withMariaDBIdleTimeout(g *gorm.DB, rawURL, isolationVar string, opts Options, cfg *gorm.Config) (*gorm.DB, error) {
	idle := opts.IdleTxTimeout
	var version string
	if err := g.Raw("SELECT VERSION()").Scan(&version).Error; err != nil {
		return nil, err
	}
	if !strings.Contains(strings.ToLower(version), "mariadb") {
		return g, nil
	}
	u, _ := url.Parse(rawURL)
	setMySQLDefaults(u, opts)
	q := u.Query()
	if !q.Has("idle_transaction_timeout") {
		q.Set("idle_transaction_timeout", strconv.FormatInt(int64(max(1, (idle+time.Second-1)/time.Second)), 10))
	}
	u.RawQuery = q.Encode()
	if sqlDB, err := g.DB(); err == nil {
		sqlDB.Close()
	}
	return gorm.Open(gormmysql.Open(MySQLDSN(u, isolationVar)), cfg)
}

// MySQLDSN turns a mysql://user:pass@host:port/db?param=value URL into a
// go-sql-driver DSN, with the session settings orderd relies on. isolationVar
// names the isolation system variable: transaction_isolation on MySQL 8 and
// MariaDB 11.1+, tx_isolation on older MariaDB.
func MySQLDSN(u *url.URL, isolationVar string) string {
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	// Arguments are interpolated into the statement by the driver (it
	// escapes them for the connection's utf8mb4 charset): one round trip
	// per statement instead of prepare, execute and close.
	cfg.InterpolateParams = true
	// READ COMMITTED avoids InnoDB's gap locks on the hot rows; the
	// conditional updates are correct under it.
	cfg.Params = map[string]string{isolationVar: "'READ-COMMITTED'"}
	for k, v := range u.Query() {
		if k == "timeout" { // the driver's dial timeout, not a session variable
			if d, err := time.ParseDuration(v[0]); err == nil {
				cfg.Timeout = d
			}
			continue
		}
		cfg.Params[k] = v[0]
	}
	return cfg.FormatDSN()
}

// InTx implements flashorder.Store.
func (db *DB) InTx(ctx context.Context, fn func(tx flashorder.Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = db.gorm.WithContext(ctx).Transaction(func(g *gorm.DB) error {
			return fn(&tx{g: g, engine: db.engine, events: db.events})
		})
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
		if attempt >= maxTxAttempts && (!lockWaitTimedOut(err) || attempt >= maxLockWaitAttempts) {
			break
		}
		time.Sleep(time.Duration(attempt) * time.Millisecond)
	}
	return translate(err)
}

// readTx runs fn in a read-only transaction that sees one snapshot.
func (db *DB) readTx(ctx context.Context, fn func(g *gorm.DB) error) error {
	opts := &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	if db.engine == SQLite {
		opts = nil // a SQLite read transaction is a snapshot already
	}
	return translate(db.gorm.WithContext(ctx).Transaction(fn, opts))
}

// retryable reports whether the database aborted a transaction that would
// succeed when run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// serialization failure, deadlock, lock_timeout
		return pgErr.Code == "40001" || pgErr.Code == "40P01" || pgErr.Code == "55P03"
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		return myErr.Number == 1213 || myErr.Number == 1205 // deadlock, lock wait timeout
	}
	return strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked")
}

// lockWaitTimedOut reports whether err is a statement that gave up waiting
// for a lock (PostgreSQL's lock_timeout, InnoDB's lock wait timeout).
func lockWaitTimedOut(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "55P03"
	}
	var myErr *mysql.MySQLError
	return errors.As(err, &myErr) && myErr.Number == 1205
}

// refusedInput reports whether the database refused a value of the request
// (a data exception) rather than failed to answer.
func refusedInput(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "22") // data exception: bad encoding, NUL, out of range
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1366, 1406, 1264, 1292, 1300: // incorrect string, too long, out of range, bad value, invalid character string
			return true
		}
	}
	return false
}

// translate turns driver errors into domain errors at the store's boundary.
// Domain errors pass through; a database that failed to answer becomes
// EUNAVAILABLE, so that the client retries instead of seeing internals.
func translate(err error) error {
	var ferr *flashorder.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ferr), errors.Is(err, flashorder.ErrIdempotencyKeyTaken):
		return err
	case errors.Is(err, gorm.ErrRecordNotFound):
		return &flashorder.Error{Code: flashorder.ENOTFOUND, Message: "not found", Err: err}
	case ReadOnly(err):
		return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the database server is no longer the primary (failover); retry", Err: err}
	case refusedInput(err):
		// The request carried a value the database cannot hold (a NUL,
		// bytes that are not UTF-8): retrying will not help, and it is
		// not the database's failure.
		return &flashorder.Error{Code: flashorder.EINVALID, Message: "the request holds a value the database cannot store", Err: err}
	default:
		return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the database did not complete the request; retry later", Err: err}
	}
}
