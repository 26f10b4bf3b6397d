package gormdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/flashorder/flashorder"
)

// This file holds the transaction primitives of the order lifecycle: status
// transitions, the expiry scan, and giving stock and quota back.

// TransitionOrder implements flashorder.Tx. The status condition is checked by
// the UPDATE itself, on the latest row version, so of two transactions that
// move the same order only one matches; the other waits for the row lock and
// then finds the new status.
func (t *tx) TransitionOrder(ctx context.Context, id string, from, to flashorder.Status) (*flashorder.Order, error) {
	g := t.g.WithContext(ctx)
	res := g.Exec("UPDATE orders SET status = ? WHERE id = ? AND status = ?", string(to), id, string(from))
	if res.Error != nil {
		return nil, fmt.Errorf("gormdb: move order %q from %s to %s: %w", id, from, to, res.Error)
	}
	var row orderRow
	err := g.Where("id = ?", id).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, flashorder.Errorf(flashorder.ENOTFOUND, "order not found")
	}
	if err != nil {
		return nil, fmt.Errorf("gormdb: read order %q: %w", id, err)
	}
	if res.RowsAffected != 1 {
		return nil, flashorder.Errorf(flashorder.EINVALIDSTATE, "the order is %s; only a %s order can become %s", row.Status, from, to)
	}
	o := row.order()
	var items []orderItemRow
	if err := g.Where("order_id = ?", id).Order("position").Find(&items).Error; err != nil {
		return nil, fmt.Errorf("gormdb: read items of order %q: %w", id, err)
	}
	for _, it := range items {
		o.Items = append(o.Items, flashorder.OrderItem{SKU: it.SKU, Quantity: it.Quantity, PriceCents: it.PriceCents})
	}
	return o, nil
}

// OrdersCreatedBefore implements flashorder.Tx with a range scan of the index
// on (status, created_us).
func (t *tx) OrdersCreatedBefore(ctx context.Context, before time.Time, limit int) ([]string, error) {
	var ids []string
	err := t.g.WithContext(ctx).Model(&orderRow{}).
		Where("status = ? AND created_us < ?", string(flashorder.StatusCreated), before.UnixMicro()).
		Order("created_us").Limit(limit).Pluck("id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("gormdb: find orders created before %s: %w", before.UTC().Format(time.RFC3339Nano), err)
	}
	return ids, nil
}

// ReturnStock implements flashorder.Tx.
func (t *tx) ReturnStock(ctx context.Context, sku string, qty int64) error {
	if err := t.g.WithContext(ctx).Exec("UPDATE products SET stock = stock + ? WHERE sku = ?", qty, sku).Error; err != nil {
		return fmt.Errorf("gormdb: return %d of %q: %w", qty, sku, err)
	}
	return nil
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
