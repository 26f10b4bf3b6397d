package gormdb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// hexKeyOrderRow is orderRow as the versions before issue 24 stored it: the
// key as its hex SHA-256 in idempotency_key_hash. A frozen copy of that
// schema, not built from orderRow: it must not follow orderRow's changes.
type hexKeyOrderRow struct {
	ID          string  `gorm:"column:id;primaryKey;size:36;index:idx_orders_user_id,priority:2"`
	UserID      string  `gorm:"column:user_id;size:64;not null;index:idx_orders_user_id,priority:1"`
	Status      string  `gorm:"column:status;size:16;not null;index:idx_orders_status_created,priority:1;index:idx_orders_status_expires,priority:1"`
	TotalCents  int64   `gorm:"column:total_cents;not null"`
	CreatedUS   int64   `gorm:"column:created_us;not null;index:idx_orders_status_created,priority:2;index:idx_orders_status_expires,priority:3"`
	ExpiresUS   int64   `gorm:"column:expires_us;not null;default:0;index:idx_orders_status_expires,priority:2"`
	KeyHash     *string `gorm:"column:idempotency_key_hash;size:64;uniqueIndex"`
	Fingerprint string  `gorm:"column:fingerprint;size:64;not null"`
}

func (hexKeyOrderRow) TableName() string { return "orders" }

// TestMigrateHexKeys makes the schema of the versions before issue 24 on
// every engine, stores a keyed order there, and opens the database: the
// migration moves the key into the binary column and drops the old one, and
// a retry under the key, through checkout.Idempotent with a claim store
// that never saw it, replays the stored order instead of placing another.
func TestMigrateHexKeys(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const key = "old-key"
			req := &flashorder.PlaceOrderRequest{IdempotencyKey: key,
				OrderRequest: flashorder.OrderRequest{UserID: "u-1", Items: []flashorder.ItemRequest{{SKU: "p", Quantity: 1}}}}
			req.Fingerprint = req.OrderRequest.Fingerprint()
			id := uuid.Must(uuid.NewV7()).String()
			storeOldOrder(t, d.URL, hexKeyOrderRow{ID: id, UserID: "u-1", Status: string(flashorder.StatusCreated), TotalCents: 5,
				CreatedUS: time.Now().UnixMicro(), KeyHash: hexSHA256(key), Fingerprint: req.Fingerprint})

			for range 2 { // the second Open finds nothing left to migrate
				db, err := Open(ctx, d.URL, Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				m := db.gorm.Migrator()
				if m.HasColumn(&orderRow{}, hexKeyColumn) || m.HasIndex(&orderRow{}, hexKeyIndex) {
					t.Fatalf("%s or %s is still there after the migration", hexKeyColumn, hexKeyIndex)
				}
				if !m.HasIndex(&orderRow{}, "idx_orders_idempotency_key") {
					t.Fatal("no idx_orders_idempotency_key after the migration")
				}
				placer := checkout.NewIdempotent(checkout.NewBatch(db, checkout.BatchOptions{}), inmem.NewIdempotencyStore(), db, nil)
				retry := *req
				o, replayed, err := placer.Place(ctx, &retry)
				if err != nil || !replayed || o.ID != id || len(o.Items) != 1 {
					t.Fatalf("retry under the old key: %+v replayed %v, %v; want order %s replayed", o, replayed, err, id)
				}
				other := *req
				other.Items = []flashorder.ItemRequest{{SKU: "p", Quantity: 2}}
				other.Fingerprint = other.OrderRequest.Fingerprint()
				if _, _, err := placer.Place(ctx, &other); flashorder.ErrorCode(err) != flashorder.EKEYREUSED {
					t.Fatalf("other content under the old key: %v, want %s", err, flashorder.EKEYREUSED)
				}
				inv, err := db.CheckInvariants(ctx, []string{id})
				if err != nil || !inv.OK() || inv.Orders != 1 {
					t.Fatalf("invariants: %+v %v, want one order and no violation", inv, err)
				}
			}
		})
	}
}

// storeOldOrder makes the tables of the versions before issue 24 at rawURL,
// with product p (10 units, 1 sold to row) and row with one unit of it.
func storeOldOrder(t *testing.T, rawURL string, row hexKeyOrderRow) {
	t.Helper()
	d, err := newDialect(rawURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := d.open(&gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := g.DB(); err == nil {
		defer sqlDB.Close()
	}
	migrator := g
	if opts := d.tableOptions(); opts != "" {
		migrator = g.Set("gorm:table_options", opts) // a handle of its own: Set's carries its statement on
	}
	if err := migrator.AutoMigrate(&productRow{}, &hexKeyOrderRow{}, &orderItemRow{}, &userPurchaseRow{}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{
		&productRow{SKU: "p", Name: "p", PriceCents: 5, Stock: 9, Restocked: 10},
		&row,
		&orderItemRow{OrderID: row.ID, SKU: "p", Quantity: 1, PriceCents: 5},
	} {
		if err := g.Create(v).Error; err != nil {
			t.Fatal(err)
		}
	}
}

// hexSHA256 is the key column of the versions before issue 24.
func hexSHA256(key string) *string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return &h
}
