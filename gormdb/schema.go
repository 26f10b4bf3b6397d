package gormdb

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

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
	// KeyHash is the hex SHA-256 of the Idempotency-Key: fixed length, and
	// immune to collations that ignore case or trailing spaces.
	KeyHash     *string `gorm:"column:idempotency_key_hash;size:64;uniqueIndex"`
	Fingerprint string  `gorm:"column:fingerprint;size:64;not null"`
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

func keyHash(key string) *string {
	if key == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return &h
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
