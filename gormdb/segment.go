package gormdb

import (
	"context"
	"fmt"
	"math/rand/v2"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// segmentRow holds part of a SKU's available stock, for the segment strategy:
// orders spread their row locks over a SKU's segments instead of queueing on
// one row. A product's available stock is products.stock plus its segments.
type segmentRow struct {
	SKU     string `gorm:"column:sku;primaryKey;size:64"`
	Segment int    `gorm:"column:segment;primaryKey;autoIncrement:false"`
	Stock   int64  `gorm:"column:stock;not null"`
}

// TableName names segmentRow's table for GORM.
func (segmentRow) TableName() string { return "stock_segments" }

// TakeFromSegment takes qty units of sku from one segment that has them,
// chosen at random among n. Where the engine has SKIP LOCKED it first looks
// for a segment no other transaction holds; it waits for a held one only
// when no free one has the units. It returns false, changing nothing, when
// no single segment has qty units; see flashorder.Tx for the lock such a
// false may leave behind.
func (t *tx) TakeFromSegment(ctx context.Context, sku string, qty int64, n int) (bool, error) {
	g := t.g.WithContext(ctx)
	start := rand.IntN(max(n, 1))
	// Segments ordered from a random start, so that concurrent orders
	// spread over them.
	order := clause.Expr{SQL: "CASE WHEN segment >= ? THEN segment - ? ELSE segment + ? END", Vars: []any{start, start, n}}
	if t.dialect.rowLocks() {
		var free []int
		err := g.Model(&segmentRow{}).Where("sku = ? AND stock >= ?", sku, qty).
			Clauses(clause.OrderBy{Expression: order}, clause.Locking{Strength: "UPDATE", Options: "SKIP LOCKED"}).
			Limit(1).Pluck("segment", &free).Error
		if err != nil {
			return false, fmt.Errorf("gormdb: find a free segment of %q: %w", sku, err)
		}
		if len(free) == 1 {
			return t.takeSegment(g, sku, free[0], qty)
		}
	}
	var candidates []int
	err := g.Model(&segmentRow{}).Where("sku = ? AND stock >= ?", sku, qty).
		Clauses(clause.OrderBy{Expression: order}).Pluck("segment", &candidates).Error
	if err != nil {
		return false, fmt.Errorf("gormdb: find a segment of %q: %w", sku, err)
	}
	for _, seg := range candidates {
		ok, err := t.takeSegment(g, sku, seg, qty)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

func (t *tx) takeSegment(g *gorm.DB, sku string, seg int, qty int64) (bool, error) {
	res := g.Exec("UPDATE stock_segments SET stock = stock - ? WHERE sku = ? AND segment = ? AND stock >= ?", qty, sku, seg, qty)
	if res.Error != nil {
		return false, fmt.Errorf("gormdb: take %d of %q from segment %d: %w", qty, sku, seg, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// RefillSegments is the slow path of the segment strategy, taken when no
// single segment has qty units: it locks the product row and every segment,
// takes qty from their total when it suffices, and spreads what remains
// evenly over n segments (fewer when little remains: see MinSegmentStock).
// It returns false, changing nothing, when the total is short.
func (t *tx) RefillSegments(ctx context.Context, sku string, qty int64, n int) (bool, error) {
	g := t.g.WithContext(ctx)
	// A sold-out SKU is answered from a plain read: refusing needs no lock,
	// and locking every segment for each refusal would serialise them all.
	var total int64
	err := g.Raw("SELECT (SELECT stock FROM products WHERE sku = ?) + (SELECT COALESCE(SUM(stock), 0) FROM stock_segments WHERE sku = ?)", sku, sku).Scan(&total).Error
	if err != nil {
		return false, fmt.Errorf("gormdb: read stock of %q: %w", sku, err)
	}
	if total < qty {
		return false, nil
	}
	unsegmented, err := t.lockStock(ctx, sku)
	if err != nil {
		return false, err
	}
	segs, err := t.lockSegments(g, sku)
	if err != nil {
		return false, err
	}
	// Another order's refill may have run while this one waited for the
	// locks: then a segment has the units, and rewriting them all again
	// would only make the next waiter wait longer.
	for _, s := range segs {
		if s.Stock >= qty {
			return t.takeSegment(g, sku, s.Segment, qty)
		}
	}
	total = unsegmented
	for _, s := range segs {
		total += s.Stock
	}
	if total < qty {
		return false, nil
	}
	total -= qty
	rows := spreadSegments(sku, total, n)
	if err := g.Where("sku = ?", sku).Delete(&segmentRow{}).Error; err != nil {
		return false, fmt.Errorf("gormdb: clear segments of %q: %w", sku, err)
	}
	if len(rows) > 0 {
		if err := g.Create(&rows).Error; err != nil {
			return false, fmt.Errorf("gormdb: write %d segments of %q: %w", len(rows), sku, err)
		}
	}
	if err := g.Exec("UPDATE products SET stock = 0 WHERE sku = ?", sku).Error; err != nil {
		return false, fmt.Errorf("gormdb: move stock of %q to segments: %w", sku, err)
	}
	return true, nil
}

// MinSegmentStock is the least stock a refill leaves in one segment. A SKU
// with little left is spread over fewer segments than asked for (down to
// one): its last units then sit where orders find them whole, instead of
// every order finding no segment that has its quantity and taking the slow
// path, which locks the product row and every segment, one order at a time.
const MinSegmentStock = 8

// spreadSegments spreads total units of sku evenly over at most n segments
// of at least MinSegmentStock units each (one segment when total is
// smaller; none when total is 0).
func spreadSegments(sku string, total int64, n int) []segmentRow {
	if total <= 0 {
		return nil
	}
	k := min(int64(max(n, 1)), max(total/MinSegmentStock, 1))
	rows := make([]segmentRow, k)
	for i := range rows {
		rows[i] = segmentRow{SKU: sku, Segment: i, Stock: total / k}
		if int64(i) < total%k {
			rows[i].Stock++
		}
	}
	return rows
}

// lockSegments locks and returns the segments of sku in segment order.
func (t *tx) lockSegments(g *gorm.DB, sku string) ([]segmentRow, error) {
	q := g.Where("sku = ?", sku).Order("segment")
	if t.dialect.rowLocks() {
		q = q.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	var segs []segmentRow
	if err := q.Find(&segs).Error; err != nil {
		return nil, fmt.Errorf("gormdb: lock segments of %q: %w", sku, err)
	}
	return segs, nil
}

// collapseSegments moves the stock of sku's segments back into its product
// row, whose lock the caller holds, and returns how many units it moved.
func (t *tx) collapseSegments(ctx context.Context, sku string) (int64, error) {
	g := t.g.WithContext(ctx)
	segs, err := t.lockSegments(g, sku)
	if err != nil || len(segs) == 0 {
		return 0, err
	}
	var sum int64
	for _, s := range segs {
		sum += s.Stock
	}
	if err := g.Where("sku = ?", sku).Delete(&segmentRow{}).Error; err != nil {
		return 0, fmt.Errorf("gormdb: clear segments of %q: %w", sku, err)
	}
	return sum, nil
}
