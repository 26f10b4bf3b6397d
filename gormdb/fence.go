package gormdb

import (
	"context"
	"fmt"
)

// This file holds flashorder.FenceTx: the fencing token of the lock strategy.

// Fence implements flashorder.Tx with one conditional update; it takes the
// row lock that TakeStock takes, so fenced writers of a SKU serialise on it.
func (t *tx) Fence(ctx context.Context, sku string, token int64) (bool, error) {
	g := t.g.WithContext(ctx)
	res := g.Exec("UPDATE products SET fence_token = ? WHERE sku = ? AND fence_token <= ?", token, sku, token)
	if res.Error != nil {
		return false, fmt.Errorf("gormdb: fence %q with token %d: %w", sku, token, res.Error)
	}
	if res.RowsAffected == 1 {
		return true, nil
	}
	// MySQL counts changed rows only: the same token again reports 0.
	var current []int64
	if err := g.Raw("SELECT fence_token FROM products WHERE sku = ?", sku).Scan(&current).Error; err != nil {
		return false, fmt.Errorf("gormdb: read the fence of %q: %w", sku, err)
	}
	return len(current) == 1 && current[0] == token, nil
}
