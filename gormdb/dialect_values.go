package gormdb

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/flashorder/flashorder"
)

// valuesStatements are the bulk statements of MySQL/MariaDB and SQLite:
// multi-row VALUES lists, in chunks of bulkRows rows, with each engine's
// clauses.
type valuesStatements struct {
	// forUpdate locks the rows that selectProducts reads when asked to
	// (MySQL; SQLite has no row locks).
	forUpdate bool
	// rowList formats a list of row constructors for IN: "(%s)" on MySQL,
	// "(VALUES %s)" on SQLite.
	rowList string
	// quotaUpsert is the clause that adds to an existing counter.
	quotaUpsert string
	// skipTakenKey is the clause that skips an order whose key is taken.
	skipTakenKey string
}

func (valuesStatements) param(int) string { return "?" }

// selectProducts relies on byte order of SKUs: MySQL's table is utf8mb4_bin
// and SQLite compares bytes.
func (v valuesStatements) selectProducts(skus []string, lock bool) (string, []any) {
	q := productColumns + " WHERE sku IN (" + inList(len(skus)) + ") ORDER BY sku"
	if lock && v.forUpdate {
		q += " FOR UPDATE"
	}
	return q, stringArgs(skus)
}

func (valuesStatements) takeStocks(skus []string, qty []int64) (string, []any) {
	var b strings.Builder
	b.WriteString("UPDATE products SET stock = stock - CASE sku")
	args := make([]any, 0, 3*len(skus))
	for i, sku := range skus {
		b.WriteString(" WHEN ? THEN ?")
		args = append(args, sku, qty[i])
	}
	b.WriteString(" END WHERE sku IN (" + inList(len(skus)) + ")")
	args = append(args, stringArgs(skus)...)
	return b.String(), args
}

// quotas looks the pairs up through the primary key (user_id, sku) with a
// list of row constructors (per bulkRows pairs).
func (v valuesStatements) quotas(ctx context.Context, c sqlConn, m map[flashorder.QuotaKey]int64, keys []flashorder.QuotaKey) error {
	for chunk := range slices.Chunk(keys, bulkRows) {
		args := make([]any, 0, 2*len(chunk))
		for _, k := range chunk {
			args = append(args, k.UserID, k.SKU)
		}
		q := "SELECT user_id, sku, quantity FROM user_purchases WHERE (user_id, sku) IN " + fmt.Sprintf(v.rowList, placeholders(len(chunk), 2))
		if err := scanQuotas(ctx, c, m, q, args...); err != nil {
			return err
		}
	}
	return nil
}

func (v valuesStatements) addQuotas(ctx context.Context, c sqlConn, keys []flashorder.QuotaKey, add map[flashorder.QuotaKey]int64) error {
	for chunk := range slices.Chunk(keys, bulkRows) {
		args := make([]any, 0, 3*len(chunk))
		for _, k := range chunk {
			args = append(args, k.UserID, k.SKU, add[k])
		}
		q := "INSERT INTO user_purchases (user_id, sku, quantity) VALUES " + placeholders(len(chunk), 3) + v.quotaUpsert
		if _, err := c.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("gormdb: add %d quotas: %w", len(keys), err)
		}
	}
	return nil
}

// insertOrders inserts the orders; when fewer rows went in than were sent,
// one look-up by id tells which. Then it inserts the items of those that
// went in.
func (v valuesStatements) insertOrders(ctx context.Context, c sqlConn, rows []orderRow, items []orderItemRow) (map[string]bool, error) {
	inserted, err := v.insertOrderRows(ctx, c, rows)
	if err != nil {
		return nil, err
	}
	if len(inserted) < len(rows) {
		items = slices.DeleteFunc(items, func(it orderItemRow) bool { return !inserted[it.OrderID] })
	}
	if err := insertItems(ctx, c, items); err != nil {
		return nil, err
	}
	return inserted, nil
}

// insertOrderRows inserts rows, skipping those whose key is taken, and
// returns the ids that went in.
func (v valuesStatements) insertOrderRows(ctx context.Context, c sqlConn, rows []orderRow) (map[string]bool, error) {
	var affected int64
	for chunk := range slices.Chunk(rows, bulkRows) {
		args := make([]any, 0, 8*len(chunk))
		for _, r := range chunk {
			args = append(args, r.ID, r.UserID, r.Status, r.TotalCents, r.CreatedUS, r.KeyHash, r.Fingerprint, r.ExpiresUS)
		}
		res, err := c.ExecContext(ctx, insertOrderColumns+" VALUES "+placeholders(len(chunk), 8)+v.skipTakenKey, args...)
		if err != nil {
			return nil, fmt.Errorf("gormdb: insert %d orders: %w", len(rows), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("gormdb: insert %d orders: %w", len(rows), err)
		}
		affected += n
	}
	got := make(map[string]bool, len(rows))
	if affected == int64(len(rows)) {
		for _, r := range rows {
			got[r.ID] = true
		}
		return got, nil
	}
	return got, storedIDs(ctx, c, rows, got)
}

// storedIDs adds to got the ids of rows that are in the orders table.
func storedIDs(ctx context.Context, c sqlConn, rows []orderRow, got map[string]bool) error {
	for chunk := range slices.Chunk(rows, bulkRows) {
		args := make([]any, len(chunk))
		for i, r := range chunk {
			args[i] = r.ID
		}
		if err := scanIDs(ctx, c, got, "SELECT id FROM orders WHERE id IN ("+inList(len(chunk))+")", args...); err != nil {
			return fmt.Errorf("gormdb: look up %d inserted orders: %w", len(rows), err)
		}
	}
	return nil
}

// insertItems inserts order items with multi-row VALUES.
func insertItems(ctx context.Context, c sqlConn, items []orderItemRow) error {
	if len(items) == 0 {
		return nil
	}
	const cols = "INSERT INTO order_items (order_id, sku, position, quantity, price_cents)"
	for chunk := range slices.Chunk(items, bulkRows) {
		args := make([]any, 0, 5*len(chunk))
		for _, it := range chunk {
			args = append(args, it.OrderID, it.SKU, it.Position, it.Quantity, it.PriceCents)
		}
		if _, err := c.ExecContext(ctx, cols+" VALUES "+placeholders(len(chunk), 5), args...); err != nil {
			return fmt.Errorf("gormdb: insert %d order items: %w", len(items), err)
		}
	}
	return nil
}

func (valuesStatements) idIn(ids []string) (string, []any) {
	return "IN (" + inList(len(ids)) + ")", stringArgs(ids)
}

func (valuesStatements) insertEvents(ctx context.Context, c sqlConn, rows []eventRow) error {
	for chunk := range slices.Chunk(rows, bulkRows) {
		args := make([]any, 0, 6*len(chunk))
		for _, r := range chunk {
			args = append(args, r.EventID, r.OrderID, r.Seq, r.Type, r.TimeUS, r.Data)
		}
		if _, err := c.ExecContext(ctx, insertEventColumns+" VALUES "+placeholders(len(chunk), 6), args...); err != nil {
			return fmt.Errorf("gormdb: insert %d order events: %w", len(rows), err)
		}
	}
	return nil
}
