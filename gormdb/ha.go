package gormdb

import (
	"context"
	"database/sql/driver"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL behind a failover manager (Patroni, or any HA setup that keeps
// libpq's multi-host semantics): the database URL names every node,
//
//	postgres://user@h1:5432,h2:5432,h3:5432/db?target_session_attrs=read-write&connect_timeout=2
//
// and pgx connects to the first that accepts writes. What the pool must add:
//
//   - A connection whose server died (a crash, a demotion that restarts
//     PostgreSQL) fails its next statement; pgx then marks it closed and the
//     pool discards it before reuse (stdlib's ResetSession), so the pool
//     refills with connections to the new primary without a restart.
//   - A connection to a node that no longer takes writes but still answers
//     (SQLSTATE 25006, read_only_sql_transaction, or a node that reports
//     in_hot_standby) would keep failing every order routed through it. It
//     is closed at the first such error and never reused; the order gets 503
//     unavailable (translate), and the next connection goes through
//     target_session_attrs to the primary.
//   - A COMMIT whose connection dropped has an unknown outcome: the error is
//     503 like any other, never 201, and a retry with the same
//     Idempotency-Key finds the order by its key if the commit did happen.

// sqlStateReadOnly is read_only_sql_transaction: a write on a standby, or on
// a primary that was demoted without dropping its sessions.
const sqlStateReadOnly = "25006"

// haOptions are the pgx connector options of every PostgreSQL pool; tracer,
// when not nil, traces every connection's statements.
func haOptions(tracer pgx.QueryTracer) []stdlib.OptionOpenDB {
	return []stdlib.OptionOpenDB{
		stdlib.OptionBeforeConnect(func(_ context.Context, cc *pgx.ConnConfig) error {
			if tracer != nil {
				cc.Tracer = tracer
			}
			prev := cc.OnPgError
			cc.OnPgError = func(c *pgconn.PgConn, e *pgconn.PgError) bool {
				if e.Code == sqlStateReadOnly {
					return false // close the connection: its server takes no writes
				}
				return prev == nil || prev(c, e)
			}
			return nil
		}),
		stdlib.OptionResetSession(func(_ context.Context, c *pgx.Conn) error {
			// PostgreSQL 14+ reports in_hot_standby to the client, also
			// when it changes: a connection to a standby is not reused.
			if c.PgConn().ParameterStatus("in_hot_standby") == "on" {
				return driver.ErrBadConn
			}
			return nil
		}),
	}
}

// ReadOnly reports whether err is the database refusing a write because its
// server is not (or no longer) the primary.
func ReadOnly(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == sqlStateReadOnly
}

// WritesTo returns host:port of the database server that a pooled connection
// reaches, and reports whether that server takes writes (it is not in
// recovery). With a multi-host URL this names the current primary; orderd's
// /readyz shows it. On SQLite it returns the engine name and true.
func (db *DB) WritesTo(ctx context.Context) (string, bool, error) {
	return db.dialect.writesTo(ctx, db)
}
