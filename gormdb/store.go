package gormdb

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/flashorder/flashorder"
)

// PutProduct implements flashorder.Store. Under the product row's lock it
// rebuilds the per-user counters of a product that gains a limit (they are
// kept only while it has one), and it
// moves any stock segments back into the row and records the difference
// between the new stock and the available stock it replaces as a restock, so
// that a PUT racing with orders keeps restocked == available + sold.
func (db *DB) PutProduct(ctx context.Context, p flashorder.Product) (*flashorder.Product, error) {
	var out *flashorder.Product
	err := db.inTx(ctx, func(t *tx) error {
		g := t.g.WithContext(ctx)
		row := newProductRow(p)
		res := g.Clauses(clause.OnConflict{DoNothing: true}).Create(&row)
		if res.Error != nil {
			return fmt.Errorf("gormdb: insert product %q: %w", p.SKU, res.Error)
		}
		if res.RowsAffected == 0 {
			locked, err := t.LockProducts(ctx, []string{p.SKU})
			if err != nil {
				return err
			}
			old := locked[p.SKU]
			if old == nil {
				return fmt.Errorf("gormdb: product %q vanished while being replaced", p.SKU)
			}
			segmented, err := t.collapseSegments(ctx, p.SKU)
			if err != nil {
				return err
			}
			available, oldLimit := old.Stock+segmented, old.PerUserLimit
			err = g.Exec("UPDATE products SET restocked = restocked + ?, stock = ?, name = ?, price_cents = ?, per_user_limit = ?, "+
				"starts_us = ?, ends_us = ?, payment_window_s = ?, admission = ?, sale = ?, admission_factor = ? WHERE sku = ?",
				p.Stock-available, p.Stock, p.Name, p.PriceCents, p.PerUserLimit, row.StartsUS, row.EndsUS, row.PaymentWindowS,
				row.Admission, row.Sale, row.AdmissionFactor, p.SKU).Error
			if err != nil {
				return fmt.Errorf("gormdb: update product %q: %w", p.SKU, err)
			}
			if oldLimit == 0 && p.PerUserLimit > 0 {
				if err := t.rebuildQuotas(ctx, p.SKU); err != nil {
					return err
				}
			}
		}
		var stored productRow
		if err := g.Where("sku = ?", p.SKU).Take(&stored).Error; err != nil {
			return fmt.Errorf("gormdb: read product %q: %w", p.SKU, err)
		}
		out = stored.product()
		return nil
	})
	return out, err
}

// Product implements flashorder.Store. Its stock includes the stock held in
// segments.
func (db *DB) Product(ctx context.Context, sku string) (*flashorder.Product, error) {
	var row productRow
	err := db.gorm.WithContext(ctx).Where("sku = ?", sku).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, flashorder.ProductNotFound(sku)
	}
	if err != nil {
		return nil, db.translate(fmt.Errorf("gormdb: read product %q: %w", sku, err))
	}
	var segmented int64
	err = db.gorm.WithContext(ctx).Model(&segmentRow{}).Where("sku = ?", sku).Select("COALESCE(SUM(stock), 0)").Scan(&segmented).Error
	if err != nil {
		return nil, db.translate(fmt.Errorf("gormdb: read segments of %q: %w", sku, err))
	}
	row.Stock += segmented
	return row.product(), nil
}

// SaleProducts returns the products of sale (Product.Sale), by SKU, their
// stock including the stock held in segments: what the waiting room of a
// sale admits against.
func (db *DB) SaleProducts(ctx context.Context, sale string) ([]*flashorder.Product, error) {
	ps, err := db.productsWhere(ctx, "sale = ?", sale)
	if err != nil {
		return nil, fmt.Errorf("gormdb: read the products of sale %q: %w", sale, err)
	}
	return ps, nil
}

// Products implements flashorder.ProductsReader: the products of skus, their
// stock including the stock held in segments, in two statements whatever
// their number.
func (db *DB) Products(ctx context.Context, skus []string) ([]*flashorder.Product, error) {
	if len(skus) == 0 {
		return nil, nil
	}
	ps, err := db.productsWhere(ctx, "sku IN ?", skus)
	if err != nil {
		return nil, fmt.Errorf("gormdb: read %d products: %w", len(skus), err)
	}
	return ps, nil
}

// productsWhere reads the products that match cond (a condition on the
// products table with its one argument), by SKU, each with the stock its
// segments hold added.
func (db *DB) productsWhere(ctx context.Context, cond string, arg any) ([]*flashorder.Product, error) {
	var rows []productRow
	if err := db.gorm.WithContext(ctx).Where(cond, arg).Order("sku").Find(&rows).Error; err != nil {
		return nil, db.translate(err)
	}
	var segmented []struct {
		SKU   string
		Stock int64
	}
	err := db.gorm.WithContext(ctx).Model(&segmentRow{}).Select("sku, COALESCE(SUM(stock), 0) AS stock").
		Where("sku IN (?)", db.gorm.Model(&productRow{}).Select("sku").Where(cond, arg)).
		Group("sku").Scan(&segmented).Error
	if err != nil {
		return nil, db.translate(fmt.Errorf("segments: %w", err))
	}
	extra := make(map[string]int64, len(segmented))
	for _, s := range segmented {
		extra[s.SKU] = s.Stock
	}
	out := make([]*flashorder.Product, len(rows))
	for i := range rows {
		rows[i].Stock += extra[rows[i].SKU]
		out[i] = rows[i].product()
	}
	return out, nil
}

// Order implements flashorder.Store.
func (db *DB) Order(ctx context.Context, id string) (*flashorder.Order, error) {
	return db.oneOrder(ctx, "id = ?", id)
}

// OrderByIdempotencyKey implements flashorder.Store.
func (db *DB) OrderByIdempotencyKey(ctx context.Context, key string) (*flashorder.Order, error) {
	return db.oneOrder(ctx, "idempotency_key_hash = ?", *keyHash(key))
}

func (db *DB) oneOrder(ctx context.Context, where string, arg string) (*flashorder.Order, error) {
	var rows []orderRow
	if err := db.gorm.WithContext(ctx).Where(where, arg).Limit(1).Find(&rows).Error; err != nil {
		return nil, db.translate(fmt.Errorf("gormdb: read order: %w", err))
	}
	if len(rows) == 0 {
		return nil, flashorder.Errorf(flashorder.ENOTFOUND, "order not found")
	}
	orders, err := db.withItems(ctx, rows)
	if err != nil {
		return nil, err
	}
	return orders[0], nil
}

// Orders implements flashorder.Store.
func (db *DB) Orders(ctx context.Context, f flashorder.OrderFilter) (*flashorder.OrderPage, error) {
	q := db.gorm.WithContext(ctx).Where("user_id = ?", f.UserID)
	if f.Before != "" {
		q = q.Where("id < ?", f.Before)
	}
	var rows []orderRow
	if err := q.Order("id DESC").Limit(f.Limit + 1).Find(&rows).Error; err != nil {
		return nil, db.translate(fmt.Errorf("gormdb: list orders of %q: %w", f.UserID, err))
	}
	page := &flashorder.OrderPage{}
	if len(rows) > f.Limit {
		rows = rows[:f.Limit]
		page.Next = rows[len(rows)-1].ID
	}
	orders, err := db.withItems(ctx, rows)
	if err != nil {
		return nil, err
	}
	page.Orders = orders
	return page, nil
}

// withItems turns rows into orders and loads their items in one query.
func (db *DB) withItems(ctx context.Context, rows []orderRow) ([]*flashorder.Order, error) {
	orders := make([]*flashorder.Order, len(rows))
	byID := make(map[string]*flashorder.Order, len(rows))
	ids := make([]string, len(rows))
	for i := range rows {
		orders[i] = rows[i].order()
		byID[rows[i].ID] = orders[i]
		ids[i] = rows[i].ID
	}
	if len(ids) == 0 {
		return orders, nil
	}
	var items []orderItemRow
	if err := db.gorm.WithContext(ctx).Where("order_id IN ?", ids).Order("order_id, position").Find(&items).Error; err != nil {
		return nil, db.translate(fmt.Errorf("gormdb: read order items: %w", err))
	}
	for _, it := range items {
		o := byID[it.OrderID]
		o.Items = append(o.Items, flashorder.OrderItem{SKU: it.SKU, Quantity: it.Quantity, PriceCents: it.PriceCents})
	}
	return orders, nil
}

// Audit implements flashorder.Store. Both queries read one snapshot, so that
// orders committed meanwhile cannot make a sound database look broken.
func (db *DB) Audit(ctx context.Context) (*flashorder.Audit, error) {
	audit := &flashorder.Audit{OK: true, Products: []flashorder.AuditLine{}}
	err := db.readTx(ctx, func(g *gorm.DB) error {
		var products []productRow
		if err := g.Order("sku").Find(&products).Error; err != nil {
			return fmt.Errorf("gormdb: audit products: %w", err)
		}
		var sold []struct {
			SKU  string
			Sold int64
		}
		err := g.Table("order_items AS i").Select("i.sku AS sku, SUM(i.quantity) AS sold").
			Joins("JOIN orders AS o ON o.id = i.order_id").
			Where("o.status IN ?", []string{string(flashorder.StatusCreated), string(flashorder.StatusPaid)}).
			Group("i.sku").Scan(&sold).Error
		if err != nil {
			return fmt.Errorf("gormdb: audit sold units: %w", err)
		}
		soldBySKU := make(map[string]int64, len(sold))
		segmentedBySKU := map[string]int64{}
		for _, s := range sold {
			soldBySKU[s.SKU] = s.Sold
		}
		var segmented []struct {
			SKU   string
			Stock int64
		}
		err = g.Model(&segmentRow{}).Select("sku, SUM(stock) AS stock").Group("sku").Scan(&segmented).Error
		if err != nil {
			return fmt.Errorf("gormdb: audit stock segments: %w", err)
		}
		for _, s := range segmented {
			segmentedBySKU[s.SKU] = s.Stock
		}
		audit.Products = audit.Products[:0]
		audit.OK = true
		for _, p := range products {
			line := flashorder.NewAuditLine(p.SKU, p.Restocked, p.Stock+segmentedBySKU[p.SKU], soldBySKU[p.SKU])
			audit.OK = audit.OK && line.OK
			audit.Products = append(audit.Products, line)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return audit, nil
}
