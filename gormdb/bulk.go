package gormdb

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/flashorder/flashorder"
)

// The bulk statements of the group-commit engine (flashorder.Tx's
// LockProducts, TakeStocks, Quotas, AddQuotas and InsertOrders). They bypass
// GORM's reflection and run on the transaction's database/sql handle: one
// statement for each step, whatever the batch holds. PostgreSQL gets its
// fastest form, arrays unnested into rows (fixed statement text, so pgx
// prepares each once per connection); MySQL and SQLite get multi-row VALUES
// lists, in chunks of bulkRows rows.

// bulkRows bounds the rows of one multi-row VALUES statement: 500 rows of the
// widest table (8 columns) stay far below every engine's limit on bound
// parameters.
const bulkRows = 500

// conn returns the transaction's database/sql handle.
func (t *tx) conn() interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
} {
	return t.g.Statement.ConnPool
}

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

// Products implements flashorder.Tx with the statement of LockProducts
// without its lock.
func (t *tx) Products(ctx context.Context, skus []string) (map[string]*flashorder.Product, error) {
	return t.readProducts(ctx, skus, false)
}

// LockProducts implements flashorder.Tx with one SELECT ... ORDER BY sku FOR
// UPDATE: the database locks the rows in the order it returns them. On
// PostgreSQL the order is forced to bytes (COLLATE "C") so that it is the
// order Go sorts in, whatever the database's collation; MySQL's table is
// utf8mb4_bin and SQLite compares bytes. SQLite has no row locks and needs
// none: its one connection serialises transactions.
func (t *tx) LockProducts(ctx context.Context, skus []string) (map[string]*flashorder.Product, error) {
	return t.readProducts(ctx, skus, true)
}

// readProducts reads the products among skus, locking their rows in SKU order
// when lock is set.
func (t *tx) readProducts(ctx context.Context, skus []string, lock bool) (map[string]*flashorder.Product, error) {
	if len(skus) == 0 {
		return map[string]*flashorder.Product{}, nil
	}
	const cols = "SELECT sku, name, price_cents, stock, restocked, per_user_limit, starts_us, ends_us, payment_window_s FROM products"
	q, args := cols+" WHERE sku IN ("+inList(len(skus))+") ORDER BY sku", stringArgs(skus)
	if t.engine == Postgres {
		q, args = cols+` WHERE sku = ANY($1) ORDER BY sku COLLATE "C"`, []any{skus}
	}
	if lock && t.engine != SQLite {
		q += " FOR UPDATE"
	}
	rows, err := t.conn().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("gormdb: read %d products: %w", len(skus), err)
	}
	defer rows.Close()
	m := make(map[string]*flashorder.Product, len(skus))
	for rows.Next() {
		var r productRow
		if err := rows.Scan(&r.SKU, &r.Name, &r.PriceCents, &r.Stock, &r.Restocked, &r.PerUserLimit, &r.StartsUS, &r.EndsUS, &r.PaymentWindowS); err != nil {
			return nil, fmt.Errorf("gormdb: read %d products: %w", len(skus), err)
		}
		m[r.SKU] = r.product()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gormdb: read %d products: %w", len(skus), err)
	}
	return m, nil
}

// TakeStocks implements flashorder.Tx with one UPDATE. The stock >= q
// condition is a guard: under the lock the caller checked it already.
func (t *tx) TakeStocks(ctx context.Context, take map[string]int64) error {
	if len(take) == 0 {
		return nil
	}
	skus := make([]string, 0, len(take))
	for sku := range take {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	qty := make([]int64, len(skus))
	for i, sku := range skus {
		qty[i] = take[sku]
	}
	var q string
	var args []any
	if t.engine == Postgres {
		q = `UPDATE products AS p SET stock = p.stock - x.q FROM unnest($1::text[], $2::bigint[]) AS x(sku, q)
			WHERE p.sku = x.sku AND p.stock >= x.q`
		args = []any{skus, qty}
	} else {
		var b strings.Builder
		b.WriteString("UPDATE products SET stock = stock - CASE sku")
		args = make([]any, 0, 3*len(skus))
		for i, sku := range skus {
			b.WriteString(" WHEN ? THEN ?")
			args = append(args, sku, qty[i])
		}
		b.WriteString(" END WHERE sku IN (" + inList(len(skus)) + ")")
		args = append(args, stringArgs(skus)...)
		q = b.String()
	}
	res, err := t.conn().ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("gormdb: take stock of %d products: %w", len(skus), err)
	}
	if n, err := res.RowsAffected(); err != nil || n != int64(len(skus)) {
		return fmt.Errorf("gormdb: take stock of %d products: %d rows had the units (%v)", len(skus), n, err)
	}
	return nil
}

// Quotas implements flashorder.Tx. Each engine looks up exactly the pairs
// asked for through the primary key (user_id, sku): PostgreSQL probes it for
// each pair of unnested arrays; MySQL takes a list of row constructors,
// SQLite a VALUES list (per bulkRows pairs).
func (t *tx) Quotas(ctx context.Context, keys []flashorder.QuotaKey) (map[flashorder.QuotaKey]int64, error) {
	m := make(map[flashorder.QuotaKey]int64, len(keys))
	if len(keys) == 0 {
		return m, nil
	}
	if t.engine == Postgres {
		users, skus := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			users[i], skus[i] = k.UserID, k.SKU
		}
		// LATERAL makes one primary-key probe per pair: a plain join of
		// the unnested arrays lets the planner pick a hash join over the
		// whole table, which grows with every user who ever ordered.
		return m, t.scanQuotas(ctx, m, `SELECT p.user_id, p.sku, p.quantity FROM unnest($1::text[], $2::text[]) AS x(user_id, sku)
			CROSS JOIN LATERAL (SELECT user_id, sku, quantity FROM user_purchases AS q
				WHERE q.user_id = x.user_id AND q.sku = x.sku) AS p`, users, skus)
	}
	list := "(%s)"
	if t.engine == SQLite {
		list = "(VALUES %s)"
	}
	for chunk := range slices.Chunk(keys, bulkRows) {
		args := make([]any, 0, 2*len(chunk))
		for _, k := range chunk {
			args = append(args, k.UserID, k.SKU)
		}
		q := "SELECT user_id, sku, quantity FROM user_purchases WHERE (user_id, sku) IN " + fmt.Sprintf(list, placeholders(len(chunk), 2))
		if err := t.scanQuotas(ctx, m, q, args...); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// scanQuotas runs the quota query q and adds its rows to m.
func (t *tx) scanQuotas(ctx context.Context, m map[flashorder.QuotaKey]int64, q string, args ...any) error {
	rows, err := t.conn().QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("gormdb: read quotas: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k flashorder.QuotaKey
		var n int64
		if err := rows.Scan(&k.UserID, &k.SKU, &n); err != nil {
			return fmt.Errorf("gormdb: read quotas: %w", err)
		}
		m[k] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("gormdb: read quotas: %w", err)
	}
	return nil
}

// AddQuotas implements flashorder.Tx with one upsert (per bulkRows rows on
// MySQL and SQLite), its rows sorted by SKU and user so that concurrent
// upserts take their row locks in one order.
func (t *tx) AddQuotas(ctx context.Context, add map[flashorder.QuotaKey]int64) error {
	if len(add) == 0 {
		return nil
	}
	keys := make([]flashorder.QuotaKey, 0, len(add))
	for k := range add {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b flashorder.QuotaKey) int {
		if c := strings.Compare(a.SKU, b.SKU); c != 0 {
			return c
		}
		return strings.Compare(a.UserID, b.UserID)
	})
	if t.engine == Postgres {
		users, skus, qty := make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
		for i, k := range keys {
			users[i], skus[i], qty[i] = k.UserID, k.SKU, add[k]
		}
		_, err := t.conn().ExecContext(ctx, `INSERT INTO user_purchases (user_id, sku, quantity)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
			ON CONFLICT (user_id, sku) DO UPDATE SET quantity = user_purchases.quantity + excluded.quantity`, users, skus, qty)
		if err != nil {
			return fmt.Errorf("gormdb: add %d quotas: %w", len(keys), err)
		}
		return nil
	}
	upsert := " ON CONFLICT (user_id, sku) DO UPDATE SET quantity = quantity + excluded.quantity"
	if t.engine == MySQL {
		upsert = " ON DUPLICATE KEY UPDATE quantity = quantity + VALUES(quantity)"
	}
	for chunk := range slices.Chunk(keys, bulkRows) {
		args := make([]any, 0, 3*len(chunk))
		for _, k := range chunk {
			args = append(args, k.UserID, k.SKU, add[k])
		}
		q := "INSERT INTO user_purchases (user_id, sku, quantity) VALUES " + placeholders(len(chunk), 3) + upsert
		if _, err := t.conn().ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("gormdb: add %d quotas: %w", len(keys), err)
		}
	}
	return nil
}

// InsertOrders implements flashorder.Tx. The orders go in sorted by key hash,
// so that two transactions inserting the same keys wait for each other in
// one order, never in a cycle. A key taken by a stored order skips its row
// (ON CONFLICT DO NOTHING; on MySQL ON DUPLICATE KEY UPDATE of nothing, which
// unlike INSERT IGNORE turns no other error into a warning). When fewer rows
// went in than were sent, one look-up by id tells which.
func (t *tx) InsertOrders(ctx context.Context, orders []*flashorder.Order) (map[string]bool, error) {
	if len(orders) == 0 {
		return nil, nil
	}
	rows, items := orderRows(orders)
	slices.SortFunc(rows, func(a, b orderRow) int { return strings.Compare(hashOrEmpty(a.KeyHash), hashOrEmpty(b.KeyHash)) })
	inserted, err := t.insertOrderRows(ctx, rows, items)
	if err != nil {
		return nil, err
	}
	var taken map[string]bool
	if len(inserted) < len(orders) {
		taken = map[string]bool{}
		for _, o := range orders {
			if !inserted[o.ID] {
				taken[o.IdempotencyKey] = true
			}
		}
		items = slices.DeleteFunc(items, func(it orderItemRow) bool { return !inserted[it.OrderID] })
	}
	if t.engine != Postgres { // PostgreSQL's insertOrderRows inserted them
		if err := t.insertItems(ctx, items); err != nil {
			return nil, err
		}
	}
	if err := t.addCreatedEvents(ctx, orders, inserted); err != nil {
		return nil, err
	}
	return taken, nil
}

func hashOrEmpty(h *string) string {
	if h == nil {
		return ""
	}
	return *h
}

// insertOrderRows inserts rows, skipping those whose key is taken, and
// returns the ids that went in. On PostgreSQL it also inserts the items of
// the orders that went in, in the same statement: one round trip of the
// batch transaction instead of two. Elsewhere the caller inserts the items.
func (t *tx) insertOrderRows(ctx context.Context, rows []orderRow, items []orderItemRow) (map[string]bool, error) {
	const cols = "INSERT INTO orders (id, user_id, status, total_cents, created_us, idempotency_key_hash, fingerprint, expires_us)"
	if t.engine == Postgres {
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
		err := t.scanIDs(ctx, got, `WITH o AS (`+cols+`
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
	conflict := " ON CONFLICT DO NOTHING"
	if t.engine == MySQL {
		conflict = " ON DUPLICATE KEY UPDATE id = id"
	}
	var affected int64
	for chunk := range slices.Chunk(rows, bulkRows) {
		args := make([]any, 0, 8*len(chunk))
		for _, r := range chunk {
			args = append(args, r.ID, r.UserID, r.Status, r.TotalCents, r.CreatedUS, r.KeyHash, r.Fingerprint, r.ExpiresUS)
		}
		res, err := t.conn().ExecContext(ctx, cols+" VALUES "+placeholders(len(chunk), 8)+conflict, args...)
		if err != nil {
			return nil, fmt.Errorf("gormdb: insert %d orders: %w", len(rows), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("gormdb: insert %d orders: %w", len(rows), err)
		}
		affected += n
	}
	got := make(map[string]bool, len(rows))
	if affected == int64(len(rows)) {
		for _, r := range rows {
			got[r.ID] = true
		}
		return got, nil
	}
	return got, t.storedIDs(ctx, rows, got)
}

// storedIDs adds to got the ids of rows that are in the orders table.
func (t *tx) storedIDs(ctx context.Context, rows []orderRow, got map[string]bool) error {
	for chunk := range slices.Chunk(rows, bulkRows) {
		args := make([]any, len(chunk))
		for i, r := range chunk {
			args[i] = r.ID
		}
		if err := t.scanIDs(ctx, got, "SELECT id FROM orders WHERE id IN ("+inList(len(chunk))+")", args...); err != nil {
			return fmt.Errorf("gormdb: look up %d inserted orders: %w", len(rows), err)
		}
	}
	return nil
}

// scanIDs runs q, which returns one column of order ids, and adds them to got.
func (t *tx) scanIDs(ctx context.Context, got map[string]bool, q string, args ...any) error {
	rows, err := t.conn().QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		got[id] = true
	}
	return rows.Err()
}

// insertItems inserts order items with multi-row VALUES (MySQL, SQLite).
func (t *tx) insertItems(ctx context.Context, items []orderItemRow) error {
	if len(items) == 0 {
		return nil
	}
	const cols = "INSERT INTO order_items (order_id, sku, position, quantity, price_cents)"
	for chunk := range slices.Chunk(items, bulkRows) {
		args := make([]any, 0, 5*len(chunk))
		for _, it := range chunk {
			args = append(args, it.OrderID, it.SKU, it.Position, it.Quantity, it.PriceCents)
		}
		if _, err := t.conn().ExecContext(ctx, cols+" VALUES "+placeholders(len(chunk), 5), args...); err != nil {
			return fmt.Errorf("gormdb: insert %d order items: %w", len(items), err)
		}
	}
	return nil
}

// DeleteOrders implements flashorder.Tx.
func (t *tx) DeleteOrders(ctx context.Context, ids []string) error {
	for chunk := range slices.Chunk(ids, bulkRows) {
		var in string
		var args []any
		if t.engine == Postgres {
			in, args = "= ANY($1)", []any{chunk}
		} else {
			in, args = "IN ("+inList(len(chunk))+")", stringArgs(chunk)
		}
		if err := t.deleteEvents(ctx, in, args); err != nil {
			return err
		}
		if _, err := t.conn().ExecContext(ctx, "DELETE FROM order_items WHERE order_id "+in, args...); err != nil {
			return fmt.Errorf("gormdb: delete the items of %d refused orders: %w", len(ids), err)
		}
		if _, err := t.conn().ExecContext(ctx, "DELETE FROM orders WHERE id "+in, args...); err != nil {
			return fmt.Errorf("gormdb: delete %d refused orders: %w", len(ids), err)
		}
	}
	return nil
}
