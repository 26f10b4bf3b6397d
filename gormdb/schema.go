package gormdb

import (
	"crypto/sha256"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/flashorder/flashorder"
)

// productRow is a product and its stock counters.
type productRow struct {
	SKU          string `gorm:"column:sku;primaryKey;size:64"`
	Name         string `gorm:"column:name;size:800;not null"`
	PriceCents   int64  `gorm:"column:price_cents;not null"`
	Stock        int64  `gorm:"column:stock;not null"`
	Restocked    int64  `gorm:"column:restocked;not null"`
	PerUserLimit int64  `gorm:"column:per_user_limit;not null"`
	// StartsUS and EndsUS are the sale window in microseconds since the
	// Unix epoch (NULL: no bound), like orders' created_us.
	StartsUS *int64 `gorm:"column:starts_us"`
	EndsUS   *int64 `gorm:"column:ends_us"`
	// PaymentWindowS is the product's payment window in seconds; 0 is
	// orderd's --payment-timeout.
	PaymentWindowS int64 `gorm:"column:payment_window_s;not null;default:0"`
	// FenceToken is the newest lock fencing token that wrote the row (the
	// `lock` strategy); writes with an older one are refused.
	FenceToken int64 `gorm:"column:fence_token;not null;default:0"`
	// Admission is "queue" for a product sold through a waiting room, ""
	// for an open one; Sale names the sale whose room it shares ("": its
	// own); AdmissionFactor is its admission bound's factor (0: the
	// default).
	Admission       string  `gorm:"column:admission;size:8;not null;default:''"`
	Sale            string  `gorm:"column:sale;size:64;not null;default:'';index:idx_products_sale"`
	AdmissionFactor float64 `gorm:"column:admission_factor;not null;default:0"`
}

// TableName names productRow's table for GORM.
func (productRow) TableName() string { return "products" }

func (r *productRow) product() *flashorder.Product {
	return &flashorder.Product{SKU: r.SKU, Name: r.Name, PriceCents: r.PriceCents, Stock: r.Stock,
		Sold: r.Restocked - r.Stock, PerUserLimit: r.PerUserLimit, Restocked: r.Restocked,
		StartsAt: fromMicros(r.StartsUS), EndsAt: fromMicros(r.EndsUS), PaymentWindow: time.Duration(r.PaymentWindowS) * time.Second,
		Admission: r.Admission, Sale: r.Sale, AdmissionFactor: r.AdmissionFactor}
}

// newProductRow returns the row that stores p, its stock all restocked.
func newProductRow(p flashorder.Product) productRow {
	return productRow{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents, Stock: p.Stock, Restocked: p.Stock, PerUserLimit: p.PerUserLimit,
		StartsUS: toMicros(p.StartsAt), EndsUS: toMicros(p.EndsAt), PaymentWindowS: int64(p.PaymentWindow / time.Second),
		Admission: p.Admission, Sale: p.Sale, AdmissionFactor: p.AdmissionFactor}
}

// toMicros returns t in microseconds since the Unix epoch, nil staying nil.
func toMicros(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	us := t.UnixMicro()
	return &us
}

// fromMicros is toMicros's inverse, in UTC.
func fromMicros(us *int64) *time.Time {
	if us == nil {
		return nil
	}
	t := time.UnixMicro(*us).UTC()
	return &t
}

// orderRow is an order. Ids are UUIDv7 strings, so ordering by id is ordering
// by creation time. created_us is microseconds since the Unix epoch: an integer
// compares and round-trips the same on every engine.
type orderRow struct {
	ID         string `gorm:"column:id;primaryKey;size:36;index:idx_orders_user_id,priority:2"`
	UserID     string `gorm:"column:user_id;size:64;not null;index:idx_orders_user_id,priority:1"`
	Status     string `gorm:"column:status;size:16;not null;index:idx_orders_status_created,priority:1;index:idx_orders_status_expires,priority:1"`
	TotalCents int64  `gorm:"column:total_cents;not null"`
	CreatedUS  int64  `gorm:"column:created_us;not null;index:idx_orders_status_created,priority:2;index:idx_orders_status_expires,priority:3"`
	// ExpiresUS is the order's own payment deadline (Order.ExpiresAt) in
	// microseconds since the Unix epoch, or 0 when it has none (and in rows
	// stored before the column): such an order expires --payment-timeout
	// after created_us. 0 rather than NULL, so that the index on (status,
	// expires_us, created_us) gives the sweeper both kinds by a range scan
	// in due order on every engine (PostgreSQL does not order a scan by a
	// column that follows one tested IS NULL, so it would sort them all).
	ExpiresUS int64 `gorm:"column:expires_us;not null;default:0;index:idx_orders_status_expires,priority:2"`
	// KeyHash is the first 16 bytes of the SHA-256 of the
	// Idempotency-Key, binary: fixed length, immune to collations that
	// ignore case or trailing spaces, and a quarter of the 64 hex
	// characters that rows stored before issue 24 kept (see
	// migrateHexKeys). NULL for an order without a key.
	KeyHash     []byte `gorm:"column:idempotency_key;size:16;uniqueIndex:idx_orders_idempotency_key"`
	Fingerprint string `gorm:"column:fingerprint;size:64;not null"`
}

// TableName names orderRow's table for GORM.
func (orderRow) TableName() string { return "orders" }

// orderItemRow is one line of an order; position keeps the request's order.
type orderItemRow struct {
	OrderID    string `gorm:"column:order_id;primaryKey;size:36"`
	SKU        string `gorm:"column:sku;primaryKey;size:64"`
	Position   int    `gorm:"column:position;not null"`
	Quantity   int64  `gorm:"column:quantity;not null"`
	PriceCents int64  `gorm:"column:price_cents;not null"`
}

// TableName names orderItemRow's table for GORM.
func (orderItemRow) TableName() string { return "order_items" }

// userPurchaseRow counts the units of a SKU that a user holds in active
// orders. Updating it in the order's transaction enforces per_user_limit
// atomically.
type userPurchaseRow struct {
	UserID string `gorm:"column:user_id;primaryKey;size:64"`
	// SKU has an index of its own: the gate reads a SKU's holders for its sold-out marks.
	SKU      string `gorm:"column:sku;primaryKey;size:64;index:idx_user_purchases_sku"`
	Quantity int64  `gorm:"column:quantity;not null"`
}

// TableName names userPurchaseRow's table for GORM.
func (userPurchaseRow) TableName() string { return "user_purchases" }

// keyHashSize is how many bytes of a key's SHA-256 orders store: 128 bits,
// so that two of a few billion keys collide with a chance below 10^-19.
const keyHashSize = 16

// keyHash returns the KeyHash of an order under key, nil for no key.
func keyHash(key string) []byte {
	if key == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(key))
	return sum[:keyHashSize]
}

// keyArg returns a KeyHash as a statement argument: an untyped nil, which
// every driver sends as NULL, for no key (SQLite's may bind a nil []byte
// as an empty blob, which is not NULL and so not exempt from the unique
// index).
func keyArg(h []byte) any {
	if h == nil {
		return nil
	}
	return h
}

// hexKeyColumn is where orders kept their key before issue 24: the hex
// SHA-256 of the key, 64 characters, under the unique index hexKeyIndex
// (named, as GORM names an index, after the field KeyHash; KeyHash's index
// has a name of its own, so that the old one is not taken for it).
const (
	hexKeyColumn = "idempotency_key_hash"
	hexKeyIndex  = "idx_orders_key_hash"
)

// migrateHexKeys moves the keys of an orders table made before issue 24
// into KeyHash: each row's first 16 bytes of its hex key, decoded by the
// database in one UPDATE, so that a retry of an order stored then still
// finds it; then it drops the old column and its index. It does nothing
// on a table without the column. A crash halfway leaves what the next
// start finishes: the UPDATE skips rows already moved. Orders that an
// instance of the old version inserts while it runs would escape it: stop
// those before the new version starts (docs/DESIGN.md).
func migrateHexKeys(g *gorm.DB, d dialect) error {
	m := g.Migrator()
	if !m.HasColumn(&orderRow{}, hexKeyColumn) {
		return nil
	}
	moved := "UPDATE orders SET idempotency_key = " + d.unhex("substr("+hexKeyColumn+", 1, 32)") +
		" WHERE " + hexKeyColumn + " IS NOT NULL AND idempotency_key IS NULL"
	if err := g.Exec(moved).Error; err != nil {
		return fmt.Errorf("move the keys of %s: %w", hexKeyColumn, err)
	}
	if m.HasIndex(&orderRow{}, hexKeyIndex) {
		if err := m.DropIndex(&orderRow{}, hexKeyIndex); err != nil {
			return fmt.Errorf("drop %s: %w", hexKeyIndex, err)
		}
	}
	// Not m.DropColumn: on SQLite GORM rebuilds the table for it, without
	// its indexes. SQLite drops a column that no index names (3.35 on).
	if err := g.Exec("ALTER TABLE orders DROP COLUMN " + hexKeyColumn).Error; err != nil {
		return fmt.Errorf("drop %s: %w", hexKeyColumn, err)
	}
	return nil
}

func orderRows(orders []*flashorder.Order) ([]orderRow, []orderItemRow) {
	rows := make([]orderRow, 0, len(orders))
	var items []orderItemRow
	for _, o := range orders {
		row := orderRow{ID: o.ID, UserID: o.UserID, Status: string(o.Status), TotalCents: o.TotalCents,
			CreatedUS: o.CreatedAt.UnixMicro(), KeyHash: keyHash(o.IdempotencyKey), Fingerprint: o.Fingerprint}
		if o.ExpiresAt != nil {
			row.ExpiresUS = o.ExpiresAt.UnixMicro()
		}
		rows = append(rows, row)
		for i, it := range o.Items {
			items = append(items, orderItemRow{OrderID: o.ID, SKU: it.SKU, Position: i, Quantity: it.Quantity, PriceCents: it.PriceCents})
		}
	}
	return rows, items
}

func (r *orderRow) order() *flashorder.Order {
	o := &flashorder.Order{ID: r.ID, UserID: r.UserID, Status: flashorder.Status(r.Status), TotalCents: r.TotalCents,
		CreatedAt: time.UnixMicro(r.CreatedUS).UTC(), Fingerprint: r.Fingerprint, Items: []flashorder.OrderItem{}}
	if r.ExpiresUS != 0 {
		at := time.UnixMicro(r.ExpiresUS).UTC()
		o.ExpiresAt = &at
	}
	return o
}
