package gormdb

import (
	"context"
	"fmt"

	"github.com/flashorder/flashorder"
)

// This file holds flashorder.ProductTx: reading and locking product rows.

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
	if err := scanProducts(rows, m); err != nil {
		return nil, fmt.Errorf("gormdb: read %d products: %w", len(skus), err)
	}
	return m, nil
}

// rowScanner is what database/sql's and pgx's rows have in common.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanProducts adds to m the products that rows, of productColumns, hold.
func scanProducts(rows rowScanner, m map[string]*flashorder.Product) error {
	for rows.Next() {
		var r productRow
		if err := rows.Scan(&r.SKU, &r.Name, &r.PriceCents, &r.Stock, &r.Restocked, &r.PerUserLimit, &r.StartsUS, &r.EndsUS, &r.PaymentWindowS); err != nil {
			return err
		}
		m[r.SKU] = r.product()
	}
	return rows.Err()
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
