package gormdb

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/flashorder/flashorder"
)

// Invariants is what CheckInvariants read from the database.
type Invariants struct {
	// Orders is the number of orders, ActiveOrders those created or paid.
	Orders, ActiveOrders int64
	// Violations lists every invariant the database breaks, one sentence
	// each; empty when the database is sound.
	Violations []string
}

// OK reports whether the database broke no invariant.
func (inv *Invariants) OK() bool { return len(inv.Violations) == 0 }

// checkChunk is how many answered ids one look-up names.
const checkChunk = 1000

// CheckInvariants checks the database's invariants directly, apart from the
// API, on every engine and for every strategy: no oversell (for every product
// restocked = available, its stock segments included, + units in active
// orders, and available >= 0, as Audit reports it); every id in answered (the
// orders a client was told were created) is an order; no Idempotency-Key has
// two orders; every order is whole (it has items and its total is theirs);
// no user holds more active units of a product than its per-user limit. It
// is the one checker of DESIGN.md's invariants: the placer conformance suite
// (checkout/placertest) calls it after every subtest, the fault tests and
// the end-to-end tests after a run; it reads one snapshot, so that it can run
// while orders are placed.
func (db *DB) CheckInvariants(ctx context.Context, answered []string) (*Invariants, error) {
	audit, err := db.Audit(ctx)
	if err != nil {
		return nil, err
	}
	inv := &Invariants{}
	bad := func(format string, args ...any) {
		inv.Violations = append(inv.Violations, fmt.Sprintf(format, args...))
	}
	for _, l := range audit.Products {
		if !l.OK {
			bad("oversell: product %s has restocked %d, available %d, sold %d", l.SKU, l.Restocked, l.Available, l.Sold)
		}
	}
	active := []string{string(flashorder.StatusCreated), string(flashorder.StatusPaid)}
	err = db.readTx(ctx, func(g *gorm.DB) error {
		if err := g.Model(&orderRow{}).Count(&inv.Orders).Error; err != nil {
			return fmt.Errorf("gormdb: count orders: %w", err)
		}
		if err := g.Model(&orderRow{}).Where("status IN ?", active).Count(&inv.ActiveOrders).Error; err != nil {
			return fmt.Errorf("gormdb: count active orders: %w", err)
		}
		for rest := answered; len(rest) > 0; {
			chunk := rest[:min(len(rest), checkChunk)]
			rest = rest[len(chunk):]
			var found int64
			if err := g.Model(&orderRow{}).Where("id IN ?", chunk).Count(&found).Error; err != nil {
				return fmt.Errorf("gormdb: look up answered orders: %w", err)
			}
			if found != int64(len(chunk)) {
				bad("lost order: %d of %d orders answered 201 are not in the database", int64(len(chunk))-found, len(chunk))
			}
		}
		var n int64
		err := g.Raw(`SELECT count(*) FROM (SELECT idempotency_key_hash FROM orders
			WHERE idempotency_key_hash IS NOT NULL GROUP BY idempotency_key_hash HAVING count(*) > 1) d`).Scan(&n).Error
		if err != nil {
			return fmt.Errorf("gormdb: duplicate keys: %w", err)
		}
		if n > 0 {
			bad("double order: %d Idempotency-Keys have more than one order", n)
		}
		err = g.Raw(`SELECT count(*) FROM orders o LEFT JOIN (
				SELECT order_id, SUM(quantity * price_cents) AS total FROM order_items GROUP BY order_id) i ON i.order_id = o.id
			WHERE i.total IS NULL OR i.total <> o.total_cents`).Scan(&n).Error
		if err != nil {
			return fmt.Errorf("gormdb: partial orders: %w", err)
		}
		if n > 0 {
			bad("partial order: %d orders have no items or a total that is not their items'", n)
		}
		err = g.Raw(`SELECT count(*) FROM (SELECT o.user_id, i.sku FROM orders o
				JOIN order_items i ON i.order_id = o.id JOIN products p ON p.sku = i.sku
				WHERE o.status IN ? AND p.per_user_limit > 0
				GROUP BY o.user_id, i.sku, p.per_user_limit HAVING SUM(i.quantity) > p.per_user_limit) d`, active).Scan(&n).Error
		if err != nil {
			return fmt.Errorf("gormdb: per-user limits: %w", err)
		}
		if n > 0 {
			bad("per-user limit: %d users hold more units of a product than its limit", n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// CountOrdersWithKeys returns how many orders carry one of keys as their
// Idempotency-Key: a fault test asks it for the keys of orders it was refused.
func (db *DB) CountOrdersWithKeys(ctx context.Context, keys []string) (int64, error) {
	var total int64
	for rest := keys; len(rest) > 0; {
		chunk := rest[:min(len(rest), checkChunk)]
		rest = rest[len(chunk):]
		hashes := make([]string, 0, len(chunk))
		for _, k := range chunk {
			if h := keyHash(k); h != nil {
				hashes = append(hashes, *h)
			}
		}
		if len(hashes) == 0 {
			continue
		}
		var n int64
		if err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("idempotency_key_hash IN ?", hashes).Count(&n).Error; err != nil {
			return 0, db.translate(fmt.Errorf("gormdb: orders by key: %w", err))
		}
		total += n
	}
	return total, nil
}
