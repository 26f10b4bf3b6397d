package gormdb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
)

// sqliteDialect is SQLite, pure Go, on one connection: it has one writer,
// and a single connection avoids busy-waiting on its file lock.
type sqliteDialect struct {
	valuesStatements
	dsn string
}

var _ dialect = sqliteDialect{}

// newSQLiteDialect returns the dialect of the sqlite:// URL rawURL (parsed:
// u), creating the file's directory.
func newSQLiteDialect(rawURL string, u *url.URL) (sqliteDialect, error) {
	path := strings.TrimPrefix(rawURL, "sqlite://")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" {
		return sqliteDialect{}, fmt.Errorf("gormdb: sqlite URL %q names no file", rawURL)
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
		return sqliteDialect{}, fmt.Errorf("gormdb: sqlite synchronous=%q: want off, normal, full or extra", sync)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return sqliteDialect{}, fmt.Errorf("gormdb: create sqlite directory: %w", err)
	}
	// WAL lets readers run beside the writer. Transactions begin
	// IMMEDIATE, taking the write lock at BEGIN under busy_timeout: a
	// deferred one that read first cannot upgrade to a writer while
	// another process (a second orderd on the file) wrote meanwhile,
	// and fails with SQLITE_BUSY at once, without waiting.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")&_pragma=busy_timeout(10000)&_txlock=immediate"
	return sqliteDialect{
		valuesStatements: valuesStatements{
			rowList:      "(VALUES %s)",
			quotaUpsert:  " ON CONFLICT (user_id, sku) DO UPDATE SET quantity = quantity + excluded.quantity",
			skipTakenKey: " ON CONFLICT DO NOTHING",
		},
		dsn: dsn,
	}, nil
}

func (sqliteDialect) name() string { return SQLite }

func (d sqliteDialect) open(cfg *gorm.Config) (*gorm.DB, error) {
	return gorm.Open(sqlite.Open(d.dsn), cfg)
}

func (sqliteDialect) configurePool(sqlDB *sql.DB, _ Options) { sqlDB.SetMaxOpenConns(1) }

// lockMigration takes no lock: one file, on one connection.
func (sqliteDialect) lockMigration(context.Context, *sql.DB) (*sql.Conn, func(), error) {
	return nil, nil, nil
}

func (sqliteDialect) tableOptions() string { return "" }

// readTxOptions are none: a SQLite read transaction is a snapshot already.
func (sqliteDialect) readTxOptions() *sql.TxOptions { return nil }

func (sqliteDialect) rowLocks() bool { return false }

func (sqliteDialect) pipelines() bool { return false }

func (sqliteDialect) retryable(err error) bool {
	return strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked")
}

func (sqliteDialect) lockWaitTimedOut(error) bool { return false }

func (sqliteDialect) refusedInput(error) bool { return false }

func (sqliteDialect) readOnly(error) bool { return false }

func (sqliteDialect) writesTo(context.Context, *DB) (string, bool, error) { return SQLite, true, nil }

// waitDurable returns at once: a commit is durable once it returns.
func (sqliteDialect) waitDurable(context.Context, *DB) error { return nil }

func (sqliteDialect) deleteFirst(table, where string) string {
	return deleteFirstBySubquery(table, where)
}
