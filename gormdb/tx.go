package gormdb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/flashorder/flashorder"
)

var _ flashorder.Tx = (*tx)(nil)

// insertBatchSize bounds the rows of one INSERT, well below every engine's
// limit on bound parameters.
const insertBatchSize = 500

// tx implements flashorder.Tx inside one GORM transaction.
type tx struct {
	g      *gorm.DB
	engine string
}

// Products implements flashorder.Tx.
func (t *tx) Products(ctx context.Context, skus []string) (map[string]*flashorder.Product, error) {
	var rows []productRow
	if err := t.g.WithContext(ctx).Where("sku IN ?", skus).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("gormdb: read products: %w", err)
	}
	m := make(map[string]*flashorder.Product, len(rows))
	for i := range rows {
		m[rows[i].SKU] = rows[i].product()
	}
	return m, nil
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

// LockStock implements flashorder.Tx with SELECT ... FOR UPDATE. SQLite has
// no row locks and needs none: its one connection serialises transactions.
func (t *tx) LockStock(ctx context.Context, sku string) (int64, error) {
	q := t.g.WithContext(ctx).Select("stock").Where("sku = ?", sku)
	if t.engine != SQLite {
		q = q.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	var row productRow
	err := q.Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return 0, flashorder.Errorf(flashorder.EUNKNOWNPRODUCT, "unknown product %q", sku)
	}
	if err != nil {
		return 0, fmt.Errorf("gormdb: lock stock of %q: %w", sku, err)
	}
	return row.Stock, nil
}

// Quotas implements flashorder.Tx.
func (t *tx) Quotas(ctx context.Context, sku string, users []string) (map[string]int64, error) {
	var rows []userPurchaseRow
	if err := t.g.WithContext(ctx).Where("sku = ? AND user_id IN ?", sku, users).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("gormdb: read quotas of %q: %w", sku, err)
	}
	m := make(map[string]int64, len(rows))
	for _, r := range rows {
		m[r.UserID] = r.Quantity
	}
	return m, nil
}

// AddQuotas implements flashorder.Tx with one multi-row upsert.
func (t *tx) AddQuotas(ctx context.Context, sku string, add map[string]int64) error {
	rows := make([]userPurchaseRow, 0, len(add))
	for user, q := range add {
		rows = append(rows, userPurchaseRow{UserID: user, SKU: sku, Quantity: q})
	}
	slices.SortFunc(rows, func(a, b userPurchaseRow) int { return strings.Compare(a.UserID, b.UserID) })
	increment := "user_purchases.quantity + excluded.quantity"
	if t.engine == MySQL {
		increment = "quantity + VALUES(quantity)"
	}
	err := t.g.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "user_id"}, {Name: "sku"}},
		DoUpdates: clause.Assignments(map[string]any{"quantity": gorm.Expr(increment)}),
	}).CreateInBatches(rows, insertBatchSize).Error
	if err != nil {
		return fmt.Errorf("gormdb: add quotas of %q for %d users: %w", sku, len(rows), err)
	}
	return nil
}

// TakenKeys implements flashorder.Tx.
func (t *tx) TakenKeys(ctx context.Context, keys []string) (map[string]bool, error) {
	byHash := make(map[string]string, len(keys))
	hashes := make([]string, 0, len(keys))
	for _, k := range keys {
		h := *keyHash(k)
		byHash[h] = k
		hashes = append(hashes, h)
	}
	var taken []string
	if err := t.g.WithContext(ctx).Model(&orderRow{}).Where("idempotency_key_hash IN ?", hashes).Pluck("idempotency_key_hash", &taken).Error; err != nil {
		return nil, fmt.Errorf("gormdb: look up %d idempotency keys: %w", len(keys), err)
	}
	m := make(map[string]bool, len(taken))
	for _, h := range taken {
		m[byHash[h]] = true
	}
	return m, nil
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

// InsertOrders implements flashorder.Tx.
func (t *tx) InsertOrders(ctx context.Context, orders ...*flashorder.Order) error {
	rows, items := orderRows(orders)
	g := t.g.WithContext(ctx)
	if err := g.CreateInBatches(rows, insertBatchSize).Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return flashorder.ErrIdempotencyKeyTaken
		}
		return fmt.Errorf("gormdb: insert %d orders: %w", len(rows), err)
	}
	if err := g.CreateInBatches(items, insertBatchSize).Error; err != nil {
		return fmt.Errorf("gormdb: insert %d order items: %w", len(items), err)
	}
	return nil
}
