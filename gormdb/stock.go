package gormdb

import (
	"context"
	"fmt"
	"slices"
)

// This file holds flashorder.StockTx: taking units from a product row.

// TakeStocks implements flashorder.Tx with one UPDATE. The stock >= q
// condition is a guard: under the lock the caller checked it already.
func (t *tx) TakeStocks(ctx context.Context, take map[string]int64) error {
	if len(take) == 0 {
		return nil
	}
	skus, qty := takeArrays(take)
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

// takeArrays returns take as TakeStocks' arrays, sorted by SKU; never nil,
// since pgx sends a nil slice as NULL.
func takeArrays(take map[string]int64) ([]string, []int64) {
	skus := make([]string, 0, len(take))
	for sku := range take {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	qty := make([]int64, len(skus))
	for i, sku := range skus {
		qty[i] = take[sku]
	}
	return skus, qty
}

// TakeStock implements flashorder.Tx with one conditional decrement: the row
// lock it takes serialises concurrent orders of the SKU, and the condition is
// re-checked on the latest row version, so stock never goes below zero.
func (t *tx) TakeStock(ctx context.Context, sku string, qty int64) (bool, error) {
	res := t.g.WithContext(ctx).Exec("UPDATE products SET stock = stock - ? WHERE sku = ? AND stock >= ?", qty, sku, qty)
	if res.Error != nil {
		return false, fmt.Errorf("gormdb: take %d of %q: %w", qty, sku, res.Error)
	}
	return res.RowsAffected == 1, nil
}
