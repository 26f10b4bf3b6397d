package gormdb

import (
	"context"
	"fmt"

	"github.com/flashorder/flashorder"
)

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
