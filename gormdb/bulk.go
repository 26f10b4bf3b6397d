package gormdb

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/flashorder/flashorder"
)

// The bulk statements of the group-commit engine (flashorder.Tx's
// LockProducts, TakeStocks, Quotas, AddQuotas and InsertOrders). They bypass
// GORM's reflection and run on the transaction's database/sql handle: one
// statement for each step, whatever the batch holds, in the dialect's form
// (see dialect.go).

// conn returns the transaction's database/sql handle.
func (t *tx) conn() sqlConn {
	return t.g.Statement.ConnPool
}

// productColumns selects what readProducts scans, in its order.
const productColumns = "SELECT sku, name, price_cents, stock, restocked, per_user_limit, starts_us, ends_us, payment_window_s FROM products"

// Products implements flashorder.Tx with the statement of LockProducts
// without its lock.
func (t *tx) Products(ctx context.Context, skus []string) (map[string]*flashorder.Product, error) {
	return t.readProducts(ctx, skus, false)
}

// LockProducts implements flashorder.Tx with one SELECT ... ORDER BY sku FOR
// UPDATE: the database locks the rows in the order it returns them, which is
// the order Go sorts in on every engine (see the dialects' selectProducts).
// SQLite has no row locks and needs none: its one connection serialises
// transactions.
func (t *tx) LockProducts(ctx context.Context, skus []string) (map[string]*flashorder.Product, error) {
	return t.readProducts(ctx, skus, true)
}

// readProducts reads the products among skus, locking their rows in SKU order
// when lock is set.
func (t *tx) readProducts(ctx context.Context, skus []string, lock bool) (map[string]*flashorder.Product, error) {
	if len(skus) == 0 {
		return map[string]*flashorder.Product{}, nil
	}
	q, args := t.dialect.selectProducts(skus, lock)
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
	q, args := t.dialect.takeStocks(skus, qty)
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
// asked for through the primary key (user_id, sku) (see the dialects'
// quotas).
func (t *tx) Quotas(ctx context.Context, keys []flashorder.QuotaKey) (map[flashorder.QuotaKey]int64, error) {
	m := make(map[flashorder.QuotaKey]int64, len(keys))
	if len(keys) == 0 {
		return m, nil
	}
	if err := t.dialect.quotas(ctx, t.conn(), m, keys); err != nil {
		return nil, err
	}
	return m, nil
}

// scanQuotas runs the quota query q and adds its rows to m.
func scanQuotas(ctx context.Context, c sqlConn, m map[flashorder.QuotaKey]int64, q string, args ...any) error {
	rows, err := c.QueryContext(ctx, q, args...)
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
	return t.dialect.addQuotas(ctx, t.conn(), keys, add)
}

// insertOrderColumns starts every engine's insert of orders.
const insertOrderColumns = "INSERT INTO orders (id, user_id, status, total_cents, created_us, idempotency_key_hash, fingerprint, expires_us)"

// InsertOrders implements flashorder.Tx. The orders go in sorted by key hash,
// so that two transactions inserting the same keys wait for each other in
// one order, never in a cycle. A key taken by a stored order skips its row
// (ON CONFLICT DO NOTHING; on MySQL ON DUPLICATE KEY UPDATE of nothing, which
// unlike INSERT IGNORE turns no other error into a warning). The items go in
// for the orders that went in (see the dialects' insertOrders).
func (t *tx) InsertOrders(ctx context.Context, orders []*flashorder.Order) (map[string]bool, error) {
	if len(orders) == 0 {
		return nil, nil
	}
	rows, items := orderRows(orders)
	slices.SortFunc(rows, func(a, b orderRow) int { return strings.Compare(hashOrEmpty(a.KeyHash), hashOrEmpty(b.KeyHash)) })
	inserted, err := t.dialect.insertOrders(ctx, t.conn(), rows, items)
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

// scanIDs runs q, which returns one column of order ids, and adds them to got.
func scanIDs(ctx context.Context, c sqlConn, got map[string]bool, q string, args ...any) error {
	rows, err := c.QueryContext(ctx, q, args...)
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

// DeleteOrders implements flashorder.Tx.
func (t *tx) DeleteOrders(ctx context.Context, ids []string) error {
	for chunk := range slices.Chunk(ids, bulkRows) {
		in, args := t.dialect.idIn(chunk)
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
