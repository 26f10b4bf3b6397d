package flashorder

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on product fields. They keep every order total well inside int64:
// MaxPriceCents * MaxQuantity * MaxItems < 2^63.
const (
	MaxPriceCents   = 1_000_000_000_000 // ten billion in the major unit
	MaxStock        = 1_000_000_000_000
	MaxPerUserLimit = 1_000_000_000
	MaxNameLength   = 200
	// MinPaymentWindow and MaxPaymentWindow bound a product's payment_window.
	MinPaymentWindow = 10 * time.Second
	MaxPaymentWindow = 24 * time.Hour
	// MinAdmissionFactor and MaxAdmissionFactor bound a queue product's
	// admission_factor; DefaultAdmissionFactor is the factor of one that
	// sets none.
	MinAdmissionFactor     = 1.0
	MaxAdmissionFactor     = 100.0
	DefaultAdmissionFactor = 1.5
)

// Admission modes of a product (Product.Admission).
const (
	// AdmissionOpen takes any buyer's order: the default, stored as "".
	AdmissionOpen = "open"
	// AdmissionQueue takes only the orders of buyers admitted through the
	// product's waiting room (its own, or its sale's), each carrying an
	// admission token.
	AdmissionQueue = "queue"
)

// Product statuses, as the product page shows them (ProductStatus).
const (
	ProductUpcoming = "upcoming"
	ProductOpen     = "open"
	ProductSoldOut  = "sold_out"
	ProductEnded    = "ended"
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
	// StartsAt and EndsAt are the product's sale window: orders are taken
	// from StartsAt (inclusive) until EndsAt (exclusive). Nil is no bound.
	// Both are UTC with microsecond precision, the precision every database
	// keeps.
	StartsAt *time.Time `json:"starts_at,omitempty"`
	EndsAt   *time.Time `json:"ends_at,omitempty"`
	// PaymentWindow, when not zero, is how long this product's orders stay
	// unpaid before they expire, instead of orderd's --payment-timeout. An
	// order of several products gets the shortest of their windows.
	PaymentWindow time.Duration `json:"-"`
	// Restocked is the sum of every stock change made by an admin; the stock
	// invariant is Restocked == Stock + Sold.
	Restocked int64 `json:"-"`
	// Admission is AdmissionQueue for a product sold through a waiting
	// room, "" for an open one.
	Admission string `json:"admission,omitempty"`
	// Sale, with AdmissionQueue, names the sale whose one waiting room the
	// product shares with the sale's other products; "" is a room of its
	// own.
	Sale string `json:"sale,omitempty"`
	// AdmissionFactor, with AdmissionQueue, bounds the admissions: units
	// sold plus admissions outstanding stay within stock times the factor.
	// 0 is DefaultAdmissionFactor.
	AdmissionFactor float64 `json:"admission_factor,omitempty"`
}

// Queued reports whether the product is sold through a waiting room.
func (p *Product) Queued() bool { return p.Admission == AdmissionQueue }

// Factor returns the product's admission factor, its default filled in.
func (p *Product) Factor() float64 {
	if p.AdmissionFactor == 0 {
		return DefaultAdmissionFactor
	}
	return p.AdmissionFactor
}

// Window is where an instant lies against a product's sale window.
type Window int8

// The places of an instant against a sale window.
const (
	// WindowBefore is before StartsAt.
	WindowBefore Window = -1
	// WindowOpen is inside the window (or there is none).
	WindowOpen Window = 0
	// WindowAfter is at or after EndsAt.
	WindowAfter Window = 1
)

// WindowAt returns where now lies against the sale window: the one
// definition of "open" that CheckWindow, Status and the caches share.
func (p *Product) WindowAt(now time.Time) Window {
	switch {
	case p.StartsAt != nil && now.Before(*p.StartsAt):
		return WindowBefore
	case p.EndsAt != nil && !now.Before(*p.EndsAt):
		return WindowAfter
	}
	return WindowOpen
}

// CheckWindow returns nil when the sale window is open at now, and otherwise
// the refusal an order at now gets: ENOTSTARTED (with StartsAt set) before
// the start, ESALEENDED from the end on.
func (p *Product) CheckWindow(now time.Time) error {
	switch p.WindowAt(now) {
	case WindowBefore:
		return &Error{Code: ENOTSTARTED, StartsAt: *p.StartsAt,
			Message: "the sale of " + quote(p.SKU) + " starts at " + p.StartsAt.UTC().Format(time.RFC3339Nano)}
	case WindowAfter:
		return &Error{Code: ESALEENDED,
			Message: "the sale of " + quote(p.SKU) + " ended at " + p.EndsAt.UTC().Format(time.RFC3339Nano)}
	}
	return nil
}

// Status returns what the product page shows at now: ProductUpcoming before
// the window, ProductEnded after it, ProductSoldOut inside it without stock,
// else ProductOpen.
func (p *Product) Status(now time.Time) string {
	switch w := p.WindowAt(now); {
	case w == WindowBefore:
		return ProductUpcoming
	case w == WindowAfter:
		return ProductEnded
	case p.Stock <= 0:
		return ProductSoldOut
	}
	return ProductOpen
}

func quote(s string) string { return `"` + s + `"` }

// ProductInput is the body of PUT /api/v1/products/{sku}. Pointers tell a
// missing field from a zero one.
type ProductInput struct {
	Name         *string `json:"name"`
	PriceCents   *int64  `json:"price_cents"`
	Stock        *int64  `json:"stock"`
	PerUserLimit *int64  `json:"per_user_limit"`
	// StartsAt and EndsAt are RFC 3339 timestamps; absent or null is no
	// bound.
	StartsAt *string `json:"starts_at"`
	EndsAt   *string `json:"ends_at"`
	// PaymentWindow is a duration in Go's syntax ("5m", "90s"),
	// MinPaymentWindow..MaxPaymentWindow; absent or null is orderd's
	// --payment-timeout.
	PaymentWindow *string `json:"payment_window"`
	// Admission is "open" (absent or null too) or "queue".
	Admission *string `json:"admission"`
	// Sale, with admission "queue", is the id (a SKU's syntax) of the sale
	// whose waiting room the product shares; absent is a room of its own.
	Sale *string `json:"sale"`
	// AdmissionFactor, with admission "queue", is
	// MinAdmissionFactor..MaxAdmissionFactor; absent is
	// DefaultAdmissionFactor.
	AdmissionFactor *float64 `json:"admission_factor"`
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
	var err error
	if p.StartsAt, err = parseTimestamp("starts_at", in.StartsAt); err != nil {
		return Product{}, err
	}
	if p.EndsAt, err = parseTimestamp("ends_at", in.EndsAt); err != nil {
		return Product{}, err
	}
	if p.StartsAt != nil && p.EndsAt != nil && !p.EndsAt.After(*p.StartsAt) {
		return Product{}, Errorf(EINVALID, "ends_at must be after starts_at")
	}
	if in.PaymentWindow != nil {
		d, err := time.ParseDuration(*in.PaymentWindow)
		if err != nil || d < MinPaymentWindow || d > MaxPaymentWindow || d%time.Second != 0 {
			return Product{}, Errorf(EINVALID, "payment_window must be a duration of whole seconds from %s to %s, such as \"5m\"",
				MinPaymentWindow, MaxPaymentWindow)
		}
		p.PaymentWindow = d
	}
	if err := in.admission(&p); err != nil {
		return Product{}, err
	}
	return p, nil
}

// admission checks and sets p's admission, sale and admission factor.
func (in *ProductInput) admission(p *Product) error {
	if in.Admission != nil {
		switch *in.Admission {
		case AdmissionOpen:
		case AdmissionQueue:
			p.Admission = AdmissionQueue
		default:
			return Errorf(EINVALID, "admission must be %q or %q", AdmissionOpen, AdmissionQueue)
		}
	}
	if in.Sale != nil {
		if !p.Queued() {
			return Errorf(EINVALID, "sale needs admission %q", AdmissionQueue)
		}
		if ValidateSKU(*in.Sale) != nil {
			return Errorf(EINVALID, "sale must be an id with a SKU's syntax: 1..64 characters of A-Z a-z 0-9 _ . -")
		}
		p.Sale = *in.Sale
	}
	if in.AdmissionFactor != nil {
		f := *in.AdmissionFactor
		if !p.Queued() {
			return Errorf(EINVALID, "admission_factor needs admission %q", AdmissionQueue)
		}
		if !(f >= MinAdmissionFactor && f <= MaxAdmissionFactor) {
			return Errorf(EINVALID, "admission_factor must be %g..%g", MinAdmissionFactor, MaxAdmissionFactor)
		}
		p.AdmissionFactor = f
	}
	return nil
}

// Timestamps of a sale window lie in these years: a typo such as year 20260
// or 0001 is refused rather than stored.
const (
	minWindowYear = 2000
	maxWindowYear = 9999
)

// parseTimestamp parses the RFC 3339 timestamp of field, nil staying nil,
// into UTC with microsecond precision.
func parseTimestamp(field string, s *string) (*time.Time, error) {
	if s == nil {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil || t.Year() < minWindowYear || t.Year() > maxWindowYear {
		return nil, Errorf(EINVALID, "%s must be an RFC 3339 timestamp such as \"2026-12-01T10:00:00Z\"", field)
	}
	t = t.UTC().Truncate(time.Microsecond)
	return &t, nil
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
