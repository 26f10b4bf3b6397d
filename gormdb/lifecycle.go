package gormdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/flashorder/flashorder"
)

// This file holds flashorder.LifecycleTx: status transitions, the expiry
// scans, and giving stock back (quotas are given back in quota.go).

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
	if err := t.addTransitionEvent(ctx, o); err != nil {
		return nil, err
	}
	return o, nil
}

// OrdersDue implements flashorder.Tx with two range scans of the index on
// (status, expires_us, created_us), each in due order and bounded by limit:
// the orders with a deadline of their own (expires_us > 0) before now, and
// those without one (expires_us = 0) created before now - defaultTimeout. It
// merges them by due time and keeps the first limit, so that neither kind
// waits behind the other.
func (t *tx) OrdersDue(ctx context.Context, now time.Time, defaultTimeout time.Duration, limit int) ([]string, error) {
	created := string(flashorder.StatusCreated)
	var own, dflt []dueOrder
	err := t.g.WithContext(ctx).Model(&orderRow{}).Select("id, expires_us AS due").
		Where("status = ? AND expires_us > 0 AND expires_us < ?", created, now.UnixMicro()).
		Order("expires_us").Limit(limit).Scan(&own).Error
	if err != nil {
		return nil, fmt.Errorf("gormdb: find orders due before %s: %w", now.UTC().Format(time.RFC3339Nano), err)
	}
	before := now.Add(-defaultTimeout)
	err = t.g.WithContext(ctx).Model(&orderRow{}).Select("id, created_us AS due").
		Where("status = ? AND expires_us = 0 AND created_us < ?", created, before.UnixMicro()).
		Order("created_us").Limit(limit).Scan(&dflt).Error
	if err != nil {
		return nil, fmt.Errorf("gormdb: find orders created before %s: %w", before.UTC().Format(time.RFC3339Nano), err)
	}
	shift := defaultTimeout.Microseconds()
	ids := make([]string, 0, min(limit, len(own)+len(dflt)))
	for len(ids) < limit && (len(own) > 0 || len(dflt) > 0) {
		if len(dflt) == 0 || (len(own) > 0 && own[0].Due <= dflt[0].Due+shift) {
			ids, own = append(ids, own[0].ID), own[1:]
		} else {
			ids, dflt = append(ids, dflt[0].ID), dflt[1:]
		}
	}
	return ids, nil
}

// dueOrder is an order found due and when its payment window closed (for
// orders without a deadline of their own: when they were created).
type dueOrder struct {
	ID  string `gorm:"column:id"`
	Due int64  `gorm:"column:due"`
}

// ReturnStock implements flashorder.Tx.
func (t *tx) ReturnStock(ctx context.Context, sku string, qty int64) error {
	if err := t.g.WithContext(ctx).Exec("UPDATE products SET stock = stock + ? WHERE sku = ?", qty, sku).Error; err != nil {
		return fmt.Errorf("gormdb: return %d of %q: %w", qty, sku, err)
	}
	return nil
}
