package flashorder

import (
	"strings"
	"unicode/utf8"
)

// Limits on product fields. They keep every order total well inside int64:
// MaxPriceCents * MaxQuantity * MaxItems < 2^63.
const (
	MaxPriceCents   = 1_000_000_000_000 // ten billion in the major unit
	MaxStock        = 1_000_000_000_000
	MaxPerUserLimit = 1_000_000_000
	MaxNameLength   = 200
)

// Product is a SKU on sale.
type Product struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	// Stock is the number of units available for new orders.
	Stock int64 `json:"stock"`
	// Sold is the number of units in active (created or paid) orders.
	Sold int64 `json:"sold"`
	// PerUserLimit caps the units one user holds across active orders; 0
	// means no limit.
	PerUserLimit int64 `json:"per_user_limit"`
	// Restocked is the sum of every stock change made by an admin; the stock
	// invariant is Restocked == Stock + Sold.
	Restocked int64 `json:"-"`
}

// ProductInput is the body of PUT /api/v1/products/{sku}. Pointers tell a
// missing field from a zero one.
type ProductInput struct {
	Name         *string `json:"name"`
	PriceCents   *int64  `json:"price_cents"`
	Stock        *int64  `json:"stock"`
	PerUserLimit *int64  `json:"per_user_limit"`
}

// Product validates in and returns the product it describes for sku.
func (in *ProductInput) Product(sku string) (Product, error) {
	if err := ValidateSKU(sku); err != nil {
		return Product{}, err
	}
	switch {
	case in.Name == nil:
		return Product{}, Errorf(EINVALID, "name is required")
	case *in.Name == "" || utf8.RuneCountInString(*in.Name) > MaxNameLength || !utf8.ValidString(*in.Name) ||
		strings.IndexByte(*in.Name, 0) >= 0:
		return Product{}, Errorf(EINVALID, "name must be 1..%d characters of valid UTF-8, without NUL", MaxNameLength)
	case in.PriceCents == nil:
		return Product{}, Errorf(EINVALID, "price_cents is required")
	case *in.PriceCents < 0 || *in.PriceCents > MaxPriceCents:
		return Product{}, Errorf(EINVALID, "price_cents must be 0..%d", int64(MaxPriceCents))
	case in.Stock == nil:
		return Product{}, Errorf(EINVALID, "stock is required")
	case *in.Stock < 0 || *in.Stock > MaxStock:
		return Product{}, Errorf(EINVALID, "stock must be 0..%d", int64(MaxStock))
	case in.PerUserLimit != nil && (*in.PerUserLimit < 0 || *in.PerUserLimit > MaxPerUserLimit):
		return Product{}, Errorf(EINVALID, "per_user_limit must be 0..%d (0 means no limit)", MaxPerUserLimit)
	}
	p := Product{SKU: sku, Name: *in.Name, PriceCents: *in.PriceCents, Stock: *in.Stock}
	if in.PerUserLimit != nil {
		p.PerUserLimit = *in.PerUserLimit
	}
	return p, nil
}

// AuditLine is the stock invariant of one product, computed from the database.
type AuditLine struct {
	SKU       string `json:"sku"`
	Restocked int64  `json:"restocked"`
	Available int64  `json:"available"`
	// Sold is the sum of quantities in created and paid orders.
	Sold int64 `json:"sold"`
	// OK is true when Restocked == Available + Sold and Available >= 0.
	OK bool `json:"ok"`
}

// Audit is the result of checking every product's stock invariant.
type Audit struct {
	OK       bool        `json:"ok"`
	Products []AuditLine `json:"products"`
}

// NewAuditLine computes the invariant for one product.
func NewAuditLine(sku string, restocked, available, sold int64) AuditLine {
	return AuditLine{SKU: sku, Restocked: restocked, Available: available, Sold: sold,
		OK: available >= 0 && restocked == available+sold}
}
