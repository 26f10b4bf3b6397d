package gormdb

import (
	"context"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/flashorder/flashorder"
)

var _ flashorder.Tx = (*tx)(nil)

// tx implements flashorder.Tx inside one GORM transaction.
type tx struct {
	g       *gorm.DB
	dialect dialect
	// events makes order changes write their events (Options.Events).
	events bool
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

// lockStock locks sku's product row (LockProducts) and returns its stock.
func (t *tx) lockStock(ctx context.Context, sku string) (int64, error) {
	locked, err := t.LockProducts(ctx, []string{sku})
	if err != nil {
		return 0, err
	}
	p := locked[sku]
	if p == nil {
		return 0, flashorder.Errorf(flashorder.EUNKNOWNPRODUCT, "unknown product %q", sku)
	}
	return p.Stock, nil
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
