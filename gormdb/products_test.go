package gormdb_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestProducts checks, on every database, that Products answers each SKU as
// Product does (stock held in segments included) and leaves out a SKU
// without a product, and that no SKUs read nothing.
func TestProducts(t *testing.T) {
	for _, d := range testenv.Databases(t) {
		t.Run(d.Engine, func(t *testing.T) { testProducts(t, d.URL) })
	}
}

func testProducts(t *testing.T, url string) {
	ctx := context.Background()
	db, err := gormdb.Open(ctx, url, gormdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	skus := []string{"many-a", "many-b", "many-c"}
	for i, sku := range skus {
		p := flashorder.Product{SKU: sku, Name: sku, PriceCents: int64(100 + i), Stock: int64(50 * (i + 1)), PerUserLimit: int64(i)}
		if _, err := db.PutProduct(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// many-b's stock goes into segments, less the 7 units taken.
	if err := db.InTx(ctx, func(tx flashorder.Tx) error {
		ok, err := tx.RefillSegments(ctx, "many-b", 7, 4)
		if err == nil && !ok {
			t.Error("refill refused")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	got, err := db.Products(ctx, append([]string{"many-missing"}, skus...))
	if err != nil {
		t.Fatal(err)
	}
	bySKU := make(map[string]*flashorder.Product, len(got))
	for _, p := range got {
		bySKU[p.SKU] = p
	}
	if len(got) != len(skus) || len(bySKU) != len(skus) {
		t.Fatalf("Products returned %d products (%d SKUs), want %d: %+v", len(got), len(bySKU), len(skus), got)
	}
	for _, sku := range skus {
		want, err := db.Product(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(bySKU[sku], want) {
			t.Errorf("Products' %s = %+v, Product's %+v", sku, bySKU[sku], want)
		}
	}
	if p := bySKU["many-b"]; p == nil || p.Stock != 93 {
		t.Errorf("many-b with its segments: %+v, want stock 93", p)
	}
	if none, err := db.Products(ctx, nil); err != nil || len(none) != 0 {
		t.Errorf("Products(nil) = %v, %v", none, err)
	}
}
