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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/flashorder/flashorder"
)

// postgresDialect is PostgreSQL through pgx. Its bulk statements take arrays
// unnested into rows: fixed statement text whatever the batch holds, so pgx
// prepares each once per connection.
type postgresDialect struct {
	serverEngine
	dsn string
	// tracer, when set, traces the statements of every connection (tests
	// count round trips with it).
	tracer pgx.QueryTracer
}

var _ dialect = postgresDialect{}

// newPostgresDialect returns the dialect of the postgres:// URL u. Session
// settings go in the startup message (pgx passes unknown URL parameters on
// as run-time parameters); the URL's own win.
func newPostgresDialect(u *url.URL, opts Options) postgresDialect {
	q := u.Query()
	for k, v := range postgresSessionParams(opts) {
		if !q.Has(k) {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return postgresDialect{dsn: u.String()}
}

// postgresSessionParams returns the connection parameters that carry opts:
// connect_timeout for pgx, the rest as run-time parameters of every session.
func postgresSessionParams(opts Options) map[string]string {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	p := map[string]string{"connect_timeout": wholeSeconds(opts.connectTimeout())}
	if opts.IdleTxTimeout > 0 {
		p["idle_in_transaction_session_timeout"] = ms(opts.IdleTxTimeout)
	}
	if opts.LockTimeout > 0 {
		p["lock_timeout"] = ms(opts.LockTimeout)
	}
	if ka := opts.KeepAlive; ka > 0 {
		p["tcp_keepalives_idle"] = wholeSeconds(ka)
		p["tcp_keepalives_interval"] = wholeSeconds(ka / 3)
		p["tcp_keepalives_count"] = "3"
		p["tcp_user_timeout"] = ms(ka)
	}
	return p
}

func (postgresDialect) name() string { return Postgres }

func (d postgresDialect) open(cfg *gorm.Config) (*gorm.DB, error) {
	return gorm.Open(postgres.New(postgres.Config{DSN: d.dsn, OptionOpenDB: haOptions(d.tracer)}), cfg)
}

// lockMigration holds pg_advisory_lock. Another instance may migrate for
// longer than --db-lock-timeout: the connection waits for it (and lets the
// DDL wait for its locks) without one.
func (postgresDialect) lockMigration(ctx context.Context, sqlDB *sql.DB) (*sql.Conn, func(), error) {
	return lockedConn(ctx, sqlDB, Postgres, func(conn *sql.Conn) (func(), error) {
		after := context.WithoutCancel(ctx)
		if _, err := conn.ExecContext(ctx, "SET lock_timeout = 0"); err != nil {
			return nil, fmt.Errorf("gormdb: migrate %s schema: %w", Postgres, err)
		}
		resetTimeout := func() { _, _ = conn.ExecContext(after, "SET lock_timeout TO DEFAULT") }
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
			resetTimeout()
			return nil, fmt.Errorf("gormdb: lock for the %s migration: %w", Postgres, err)
		}
		return func() {
			_, _ = conn.ExecContext(after, "SELECT pg_advisory_unlock($1)", migrateLockKey)
			resetTimeout()
		}, nil
	})
}

func (postgresDialect) tableOptions() string { return "" }

func (postgresDialect) pipelines() bool { return true }

func (postgresDialect) param(n int) string { return "$" + strconv.Itoa(n) }

// pgCode returns err's SQLSTATE, or "" when err is not PostgreSQL's.
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func (postgresDialect) retryable(err error) bool {
	switch pgCode(err) {
	case "40001", "40P01", "55P03": // serialization failure, deadlock, lock_timeout
		return true
	}
	return false
}

func (postgresDialect) lockWaitTimedOut(err error) bool { return pgCode(err) == "55P03" }

func (postgresDialect) refusedInput(err error) bool {
	return strings.HasPrefix(pgCode(err), "22") // data exception: bad encoding, NUL, out of range
}

func (postgresDialect) readOnly(err error) bool { return ReadOnly(err) }

func (postgresDialect) writesTo(ctx context.Context, db *DB) (string, bool, error) {
	var host string
	var port int
	var standby bool
	err := db.gorm.WithContext(ctx).Raw("SELECT COALESCE(host(inet_server_addr()), 'local'), COALESCE(inet_server_port(), 0), pg_is_in_recovery()").
		Row().Scan(&host, &port, &standby)
	if err != nil {
		return "", false, db.translate(fmt.Errorf("gormdb: which server: %w", err))
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), !standby, nil
}

// waitDurable commits a transaction that holds a transaction id (and so
// writes a commit record), which waits, under synchronous replication,
// until the synchronous standbys have the WAL up to it, and with it every
// earlier commit.
func (postgresDialect) waitDurable(ctx context.Context, db *DB) error {
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return fmt.Errorf("gormdb: wait for durability: %w", err)
	}
	tx, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("gormdb: wait for durability: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT txid_current()"); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("gormdb: wait for durability: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("gormdb: wait for durability: %w", err)
	}
	return nil
}

// selectProducts orders by bytes (COLLATE "C") so that the rows lock in the
// order Go sorts in, whatever the database's collation.
func (postgresDialect) selectProducts(skus []string, lock bool) (string, []any) {
	q := productColumns + ` WHERE sku = ANY($1) ORDER BY sku COLLATE "C"`
	if lock {
		q += " FOR UPDATE"
	}
	return q, []any{skus}
}

// pgTakeStocks is TakeStocks' UPDATE: $2[i] units off the product $1[i].
const pgTakeStocks = `UPDATE products AS p SET stock = p.stock - x.q FROM unnest($1::text[], $2::bigint[]) AS x(sku, q)
			WHERE p.sku = x.sku AND p.stock >= x.q`

func (postgresDialect) takeStocks(skus []string, qty []int64) (string, []any) {
	return pgTakeStocks, []any{skus, qty}
}

// quotas probes the primary key for each pair of the unnested arrays.
// LATERAL makes one primary-key probe per pair: a plain join of the unnested
// arrays lets the planner pick a hash join over the whole table, which grows
// with every user who ever ordered.
func (postgresDialect) quotas(ctx context.Context, c sqlConn, m map[flashorder.QuotaKey]int64, keys []flashorder.QuotaKey) error {
	users, skus := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		users[i], skus[i] = k.UserID, k.SKU
	}
	return scanQuotas(ctx, c, m, `SELECT p.user_id, p.sku, p.quantity FROM unnest($1::text[], $2::text[]) AS x(user_id, sku)
			CROSS JOIN LATERAL (SELECT user_id, sku, quantity FROM user_purchases AS q
				WHERE q.user_id = x.user_id AND q.sku = x.sku) AS p`, users, skus)
}

// pgAddQuotas returns AddQuotas' upsert, its parameters from $n: qty[i]
// units more for the user users[i] of the SKU skus[i]. AddQuotas sends it
// alone, TakeStocksAndCommit after pgTakeStocks' two.
func pgAddQuotas(n int) string {
	return fmt.Sprintf(`INSERT INTO user_purchases (user_id, sku, quantity)
			SELECT * FROM unnest($%d::text[], $%d::text[], $%d::bigint[])
			ON CONFLICT (user_id, sku) DO UPDATE SET quantity = user_purchases.quantity + excluded.quantity`, n, n+1, n+2)
}

// addQuotasAlone is AddQuotas' upsert.
var addQuotasAlone = pgAddQuotas(1)

func (postgresDialect) addQuotas(ctx context.Context, c sqlConn, keys []flashorder.QuotaKey, add map[flashorder.QuotaKey]int64) error {
	users, skus, qty := quotaArrays(keys, add)
	_, err := c.ExecContext(ctx, addQuotasAlone, users, skus, qty)
	if err != nil {
		return fmt.Errorf("gormdb: add %d quotas: %w", len(keys), err)
	}
	return nil
}

// insertOrders inserts the orders and the items of those that went in with
// one statement: one round trip of the batch transaction instead of two.
func (postgresDialect) insertOrders(ctx context.Context, c sqlConn, rows []orderRow, items []orderItemRow) (map[string]bool, error) {
	n := len(rows)
	ids, users, statuses, hashes, prints := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	totals, created, expires := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, r := range rows {
		ids[i], users[i], statuses[i], hashes[i], prints[i] = r.ID, r.UserID, r.Status, hashOrEmpty(r.KeyHash), r.Fingerprint
		totals[i], created[i], expires[i] = r.TotalCents, r.CreatedUS, r.ExpiresUS
	}
	m := len(items)
	itemIDs, skus := make([]string, m), make([]string, m)
	pos, qty, price := make([]int64, m), make([]int64, m), make([]int64, m)
	for i, it := range items {
		itemIDs[i], skus[i], pos[i], qty[i], price[i] = it.OrderID, it.SKU, int64(it.Position), it.Quantity, it.PriceCents
	}
	got := make(map[string]bool, n)
	// The items' insert takes only the orders that went in: it reads
	// what the orders' insert returned (sub-statements of one WITH
	// see each other's RETURNING, not each other's rows).
	err := scanIDs(ctx, c, got, `WITH o AS (`+insertOrderColumns+`
			SELECT id, u, s, t, c, NULLIF(k, ''), f, e
			FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::bigint[]) AS x(id, u, s, t, c, k, f, e)
			ON CONFLICT DO NOTHING RETURNING id
		), i AS (
			INSERT INTO order_items (order_id, sku, position, quantity, price_cents)
			SELECT y.oid, y.sku, y.pos, y.qty, y.price
			FROM unnest($9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[]) AS y(oid, sku, pos, qty, price)
			WHERE y.oid IN (SELECT id FROM o)
		)
		SELECT id FROM o`, ids, users, statuses, totals, created, hashes, prints, expires, itemIDs, skus, pos, qty, price)
	if err != nil {
		return nil, fmt.Errorf("gormdb: insert %d orders and %d items: %w", n, m, err)
	}
	return got, nil
}

func (postgresDialect) idIn(ids []string) (string, []any) { return "= ANY($1)", []any{ids} }

func (postgresDialect) insertEvents(ctx context.Context, c sqlConn, rows []eventRow) error {
	n := len(rows)
	ids, orders, types, data := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	seqs, times := make([]int64, n), make([]int64, n)
	for i, r := range rows {
		ids[i], orders[i], types[i], data[i], seqs[i], times[i] = r.EventID, r.OrderID, r.Type, r.Data, r.Seq, r.TimeUS
	}
	if _, err := c.ExecContext(ctx, insertEventColumns+` SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[])`,
		ids, orders, seqs, types, times, data); err != nil {
		return fmt.Errorf("gormdb: insert %d order events: %w", n, err)
	}
	return nil
}

func (postgresDialect) deleteFirst(table, where string) string {
	return deleteFirstBySubquery(table, where)
}

// quotaArrays returns the counters of keys to add (add[k] for every k) as
// arrays of users, SKUs and units, in keys' order; never nil, since pgx
// sends a nil slice as NULL.
func quotaArrays(keys []flashorder.QuotaKey, add map[flashorder.QuotaKey]int64) (users, skus []string, qty []int64) {
	users, skus, qty = make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		users[i], skus[i], qty[i] = k.UserID, k.SKU, add[k]
	}
	return users, skus, qty
}
