package gormdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
)

// mysqlDialect is MySQL and MariaDB through go-sql-driver.
type mysqlDialect struct {
	serverEngine
	valuesStatements
	// u is the database URL with the settings of Options that go in it.
	u *url.URL
	// idleTxTimeout is Options.IdleTxTimeout, which only MariaDB has.
	idleTxTimeout time.Duration
}

var _ dialect = mysqlDialect{}

// newMySQLDialect returns the dialect of the mysql:// URL u.
func newMySQLDialect(u *url.URL, opts Options) mysqlDialect {
	setMySQLDefaults(u, opts)
	return mysqlDialect{
		valuesStatements: valuesStatements{
			forUpdate:   true,
			rowList:     "(%s)",
			quotaUpsert: " ON DUPLICATE KEY UPDATE quantity = quantity + VALUES(quantity)",
			// An update of nothing, which unlike INSERT IGNORE turns no
			// other error into a warning.
			skipTakenKey: " ON DUPLICATE KEY UPDATE id = id",
		},
		u:             u,
		idleTxTimeout: opts.IdleTxTimeout,
	}
}

// setMySQLDefaults adds opts to a mysql:// URL's parameters where the URL
// does not set them: the dial timeout and the session's lock wait timeout.
func setMySQLDefaults(u *url.URL, opts Options) {
	q := u.Query()
	if !q.Has("timeout") {
		q.Set("timeout", opts.connectTimeout().String())
	}
	if opts.LockTimeout > 0 && !q.Has("innodb_lock_wait_timeout") {
		q.Set("innodb_lock_wait_timeout", wholeSeconds(opts.LockTimeout))
	}
	u.RawQuery = q.Encode()
}

func (mysqlDialect) name() string { return MySQL }

// open connects with the isolation variable of MySQL 8 and MariaDB 11.1+,
// transaction_isolation, and with older MariaDB's tx_isolation when the
// server knows no such variable. When IdleTxTimeout is set and the server is
// MariaDB it connects again with idle_transaction_timeout (whole seconds, at
// least 1); MySQL has no such variable.
func (d mysqlDialect) open(cfg *gorm.Config) (*gorm.DB, error) {
	isolationVar := "transaction_isolation"
	g, err := openMySQL(d.u, isolationVar, cfg)
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == 1193 { // unknown system variable
		isolationVar = "tx_isolation"
		g, err = openMySQL(d.u, isolationVar, cfg)
	}
	if err != nil || d.idleTxTimeout <= 0 {
		return g, err
	}
	var version string
	if err := g.Raw("SELECT VERSION()").Scan(&version).Error; err != nil {
		return nil, err
	}
	if !strings.Contains(strings.ToLower(version), "mariadb") {
		return g, nil
	}
	u := *d.u
	q := u.Query()
	if !q.Has("idle_transaction_timeout") {
		q.Set("idle_transaction_timeout", wholeSeconds(d.idleTxTimeout))
	}
	u.RawQuery = q.Encode()
	if sqlDB, err := g.DB(); err == nil {
		sqlDB.Close()
	}
	return openMySQL(&u, isolationVar, cfg)
}

// openMySQL opens the database u names, isolationVar naming the isolation
// variable (MySQLDSN).
func openMySQL(u *url.URL, isolationVar string, cfg *gorm.Config) (*gorm.DB, error) {
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

// lockMigration holds GET_LOCK, waiting up to 60 s for it.
func (mysqlDialect) lockMigration(ctx context.Context, sqlDB *sql.DB) (*sql.Conn, func(), error) {
	return lockedConn(ctx, sqlDB, MySQL, func(conn *sql.Conn) (func(), error) {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(CONCAT('flashorder-migrate-', ?), 60)", migrateLockKey).Scan(&got); err != nil {
			return nil, fmt.Errorf("gormdb: lock for the %s migration: %w", MySQL, err)
		}
		if got.Int64 != 1 {
			return nil, fmt.Errorf("gormdb: lock for the %s migration: not granted within 60s", MySQL)
		}
		return func() {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(CONCAT('flashorder-migrate-', ?))", migrateLockKey)
		}, nil
	})
}

// tableOptions give a binary collation: SKUs and user ids are case-sensitive.
func (mysqlDialect) tableOptions() string {
	return "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
}

// mysqlNumber returns err's MySQL error number, or 0 when err is not MySQL's.
func mysqlNumber(err error) uint16 {
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		return myErr.Number
	}
	return 0
}

func (mysqlDialect) retryable(err error) bool {
	n := mysqlNumber(err)
	return n == 1213 || n == 1205 // deadlock, lock wait timeout
}

func (mysqlDialect) lockWaitTimedOut(err error) bool { return mysqlNumber(err) == 1205 }

func (mysqlDialect) refusedInput(err error) bool {
	switch mysqlNumber(err) {
	case 1366, 1406, 1264, 1292, 1300: // incorrect string, too long, out of range, bad value, invalid character string
		return true
	}
	return false
}

func (mysqlDialect) readOnly(error) bool { return false }

func (mysqlDialect) pipelines() bool { return false }

func (mysqlDialect) writesTo(ctx context.Context, db *DB) (string, bool, error) {
	var host string
	var port int
	var ro int
	if err := db.gorm.WithContext(ctx).Raw("SELECT @@hostname, @@port, @@read_only").Row().Scan(&host, &port, &ro); err != nil {
		return "", false, fmt.Errorf("gormdb: which server: %w", err)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), ro == 0, nil
}

// waitDurable returns at once: a commit is durable once it returns.
func (mysqlDialect) waitDurable(context.Context, *DB) error { return nil }

// deleteFirst deletes with ORDER BY and LIMIT: MySQL takes no LIMIT in an
// IN subquery.
func (mysqlDialect) deleteFirst(table, where string) string {
	return "DELETE FROM " + table + " WHERE " + where + " ORDER BY id LIMIT ?"
}
