package gormdb

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm/clause"

	"github.com/flashorder/flashorder"
)

// This file holds everything about the per-user counters (user_purchases):
// flashorder.QuotaTx, their rebuild when a product gains a limit, and the
// Store's read of a SKU's holders.

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
	if err := scanQuotaRows(rows, m); err != nil {
		return fmt.Errorf("gormdb: read quotas: %w", err)
	}
	return nil
}

// scanQuotaRows adds to m the counters that rows, of user_id, sku and
// quantity, hold.
func scanQuotaRows(rows rowScanner, m map[flashorder.QuotaKey]int64) error {
	for rows.Next() {
		var k flashorder.QuotaKey
		var n int64
		if err := rows.Scan(&k.UserID, &k.SKU, &n); err != nil {
			return err
		}
		m[k] = n
	}
	return rows.Err()
}

// ReserveQuota implements flashorder.Tx. A first purchase inserts the counter
// row; later ones add to it with a conditional update, so two concurrent
// orders of one user can never both pass the limit.
func (t *tx) ReserveQuota(ctx context.Context, userID, sku string, qty, limit int64) (bool, error) {
	if limit > 0 && qty > limit {
		return false, nil
	}
	g := t.g.WithContext(ctx)
	res := g.Clauses(clause.OnConflict{DoNothing: true}).Create(&userPurchaseRow{UserID: userID, SKU: sku, Quantity: qty})
	if res.Error != nil {
		return false, fmt.Errorf("gormdb: reserve quota of %q for %q: %w", sku, userID, res.Error)
	}
	if res.RowsAffected == 1 {
		return true, nil
	}
	res = g.Exec("UPDATE user_purchases SET quantity = quantity + ? WHERE user_id = ? AND sku = ? AND (? = 0 OR quantity + ? <= ?)",
		qty, userID, sku, limit, qty, limit)
	if res.Error != nil {
		return false, fmt.Errorf("gormdb: reserve quota of %q for %q: %w", sku, userID, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// AddQuotas implements flashorder.Tx with one upsert (per bulkRows rows on
// MySQL and SQLite), its rows sorted by SKU and user so that concurrent
// upserts take their row locks in one order.
func (t *tx) AddQuotas(ctx context.Context, add map[flashorder.QuotaKey]int64) error {
	if len(add) == 0 {
		return nil
	}
	return t.dialect.addQuotas(ctx, t.conn(), sortedQuotaKeys(add), add)
}

// sortedQuotaKeys returns add's keys sorted by SKU, then user: the order in
// which every upsert of the counters locks them.
func sortedQuotaKeys(add map[flashorder.QuotaKey]int64) []flashorder.QuotaKey {
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
	return keys
}

// ReleaseQuota implements flashorder.Tx. The counter is clamped at zero rather
// than refused: an order whose counter is missing or short (placed by a
// strategy that keeps the limit elsewhere) must still be able to end, or the
// expiry sweeper would retry it forever.
func (t *tx) ReleaseQuota(ctx context.Context, userID, sku string, qty int64) error {
	err := t.g.WithContext(ctx).Exec("UPDATE user_purchases SET quantity = CASE WHEN quantity > ? THEN quantity - ? ELSE 0 END WHERE user_id = ? AND sku = ?",
		qty, qty, userID, sku).Error
	if err != nil {
		return fmt.Errorf("gormdb: release quota of %q for %q: %w", sku, userID, err)
	}
	return nil
}

// rebuildQuotas recounts, from the active orders, what every user holds of
// sku. The caller holds sku's product row: every writer of the counters of a
// limited SKU does, so none changes them meanwhile, and orders placed while
// the SKU had no limit are counted.
func (t *tx) rebuildQuotas(ctx context.Context, sku string) error {
	g := t.g.WithContext(ctx)
	if err := g.Exec("DELETE FROM user_purchases WHERE sku = ?", sku).Error; err != nil {
		return fmt.Errorf("gormdb: rebuild the quotas of %q: %w", sku, err)
	}
	err := g.Exec(`INSERT INTO user_purchases (user_id, sku, quantity)
		SELECT o.user_id, i.sku, SUM(i.quantity) FROM orders o JOIN order_items i ON i.order_id = o.id
		WHERE i.sku = ? AND o.status IN (?, ?) GROUP BY o.user_id, i.sku`,
		sku, flashorder.StatusCreated, flashorder.StatusPaid).Error
	if err != nil {
		return fmt.Errorf("gormdb: rebuild the quotas of %q: %w", sku, err)
	}
	return nil
}

// QuotaHolders implements flashorder.Store with a range scan of the index on
// user_purchases(sku). It reads at most max+1 rows.
func (db *DB) QuotaHolders(ctx context.Context, sku string, max int) (map[string]int64, error) {
	q := "SELECT user_id, quantity FROM user_purchases WHERE sku = " + db.dialect.param(1) + " AND quantity > 0 LIMIT " + db.dialect.param(2)
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return nil, fmt.Errorf("gormdb: read the holders of %q: %w", sku, err)
	}
	rows, err := sqlDB.QueryContext(ctx, q, sku, max+1)
	if err != nil {
		return nil, db.translate(fmt.Errorf("gormdb: read the holders of %q: %w", sku, err))
	}
	defer rows.Close()
	held := map[string]int64{}
	for rows.Next() {
		var user string
		var n int64
		if err := rows.Scan(&user, &n); err != nil {
			return nil, db.translate(fmt.Errorf("gormdb: read the holders of %q: %w", sku, err))
		}
		if len(held) == max {
			return nil, flashorder.ErrTooMany
		}
		held[user] = n
	}
	if err := rows.Err(); err != nil {
		return nil, db.translate(fmt.Errorf("gormdb: read the holders of %q: %w", sku, err))
	}
	return held, nil
}
