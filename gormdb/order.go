package gormdb

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/flashorder/flashorder"
)

// This file holds flashorder.OrderTx: writing orders in bulk.

// insertOrderColumns starts every engine's insert of orders.
const insertOrderColumns = "INSERT INTO orders (id, user_id, status, total_cents, created_us, idempotency_key_hash, fingerprint, expires_us)"

// InsertOrders implements flashorder.Tx. The orders go in sorted by key hash,
// so that two transactions inserting the same keys wait for each other in
// one order, never in a cycle. A key taken by a stored order skips its row
// (ON CONFLICT DO NOTHING; on MySQL ON DUPLICATE KEY UPDATE of nothing, which
// unlike INSERT IGNORE turns no other error into a warning). The items go in
// for the orders that went in (see the dialects' insertOrders).
func (t *tx) InsertOrders(ctx context.Context, orders []*flashorder.Order) (map[string]bool, error) {
	if len(orders) == 0 {
		return nil, nil
	}
	rows, items := orderRows(orders)
	slices.SortFunc(rows, func(a, b orderRow) int { return strings.Compare(hashOrEmpty(a.KeyHash), hashOrEmpty(b.KeyHash)) })
	inserted, err := t.dialect.insertOrders(ctx, t.conn(), rows, items)
	if err != nil {
		return nil, err
	}
	var taken map[string]bool
	if len(inserted) < len(orders) {
		taken = map[string]bool{}
		for _, o := range orders {
			if !inserted[o.ID] {
				taken[o.IdempotencyKey] = true
			}
		}
	}
	if err := t.addCreatedEvents(ctx, orders, inserted); err != nil {
		return nil, err
	}
	return taken, nil
}

func hashOrEmpty(h *string) string {
	if h == nil {
		return ""
	}
	return *h
}

// scanIDs runs q, which returns one column of order ids, and adds them to got.
func scanIDs(ctx context.Context, c sqlConn, got map[string]bool, q string, args ...any) error {
	rows, err := c.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		got[id] = true
	}
	return rows.Err()
}

// DeleteOrders implements flashorder.Tx.
func (t *tx) DeleteOrders(ctx context.Context, ids []string) error {
	for chunk := range slices.Chunk(ids, bulkRows) {
		in, args := t.dialect.idIn(chunk)
		if err := t.deleteEvents(ctx, in, args); err != nil {
			return err
		}
		if _, err := t.conn().ExecContext(ctx, "DELETE FROM order_items WHERE order_id "+in, args...); err != nil {
			return fmt.Errorf("gormdb: delete the items of %d refused orders: %w", len(ids), err)
		}
		if _, err := t.conn().ExecContext(ctx, "DELETE FROM orders WHERE id "+in, args...); err != nil {
			return fmt.Errorf("gormdb: delete %d refused orders: %w", len(ids), err)
		}
	}
	return nil
}
