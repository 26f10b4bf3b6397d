package flashorder

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Limits on an order request.
const (
	MaxItems          = 20
	MaxQuantity       = 1000
	MaxIdempotencyKey = 255
	MaxListLimit      = 200
	DefaultListLimit  = 50
)

// Status is the state of an order. An order starts created and moves once to
// paid, cancelled or expired.
type Status string

// The order statuses.
const (
	StatusCreated   Status = "created"
	StatusPaid      Status = "paid"
	StatusCancelled Status = "cancelled"
	StatusExpired   Status = "expired"
)

// Active reports whether an order in status s holds stock.
func (s Status) Active() bool { return s == StatusCreated || s == StatusPaid }

// Order is an accepted order.
type Order struct {
	ID         string      `json:"id"`
	UserID     string      `json:"user_id"`
	Status     Status      `json:"status"`
	Items      []OrderItem `json:"items"`
	TotalCents int64       `json:"total_cents"`
	// CreatedAt is in UTC with microsecond precision, the precision every
	// supported database keeps, so that an order read back renders the same.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is the end of the order's own payment window: CreatedAt
	// plus the shortest Product.PaymentWindow among its products that have
	// one, fixed when the order is placed. It is nil when none has; the
	// order then expires by orderd's --payment-timeout (PaymentDeadline).
	// UTC with microsecond precision, like CreatedAt.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`

	// IdempotencyKey and Fingerprint tie the order to the request that made it.
	IdempotencyKey string `json:"-"`
	Fingerprint    string `json:"-"`
}

// PaymentDeadline returns the last instant at which the order may be paid:
// ExpiresAt when set, else CreatedAt plus defaultTimeout (orderd's
// --payment-timeout). Neither changes once the order is placed.
func (o *Order) PaymentDeadline(defaultTimeout time.Duration) time.Time {
	if o.ExpiresAt != nil {
		return *o.ExpiresAt
	}
	return o.CreatedAt.Add(defaultTimeout)
}

// Due reports whether the order's payment window has closed at now, so that
// an order still created is to expire: now is after PaymentDeadline.
func (o *Order) Due(now time.Time, defaultTimeout time.Duration) bool {
	return now.After(o.PaymentDeadline(defaultTimeout))
}

// OrderItem is one line of an order, priced from the product at order time.
type OrderItem struct {
	SKU        string `json:"sku"`
	Quantity   int64  `json:"quantity"`
	PriceCents int64  `json:"price_cents"`
}

// ItemRequest is one line of an order request.
type ItemRequest struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// OrderRequest is the body of POST /api/v1/orders.
type OrderRequest struct {
	UserID string        `json:"user_id"`
	Items  []ItemRequest `json:"items"`
}

// Validate checks the request's shape: user id, item count, SKUs, quantities.
func (r *OrderRequest) Validate() error {
	if err := ValidateUserID(r.UserID); err != nil {
		return err
	}
	if len(r.Items) == 0 || len(r.Items) > MaxItems {
		return Errorf(EINVALID, "items must hold 1..%d entries", MaxItems)
	}
	for i, it := range r.Items {
		if err := ValidateSKU(it.SKU); err != nil {
			return Errorf(EINVALID, "items[%d]: %s", i, ErrorMessage(err))
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			return Errorf(EINVALID, "items[%d]: quantity must be an integer 1..%d", i, MaxQuantity)
		}
		for _, prev := range r.Items[:i] {
			if prev.SKU == it.SKU {
				return Errorf(EINVALID, "items[%d]: sku %q appears twice", i, it.SKU)
			}
		}
	}
	return nil
}

// Fingerprint identifies the request's content for idempotency: the same user
// and items in the same order give the same fingerprint, whatever the JSON
// spacing was. It is a hex SHA-256.
func (r *OrderRequest) Fingerprint() string {
	h := sha256.New()
	var buf [64]byte
	h.Write([]byte("POST /api/v1/orders\n"))
	h.Write([]byte(r.UserID))
	for _, it := range r.Items {
		h.Write([]byte{0})
		h.Write([]byte(it.SKU))
		h.Write([]byte{0})
		h.Write(strconv.AppendInt(buf[:0], it.Quantity, 10))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// OrderFilter selects one page of a user's orders.
type OrderFilter struct {
	UserID string
	// Limit is the page size, 1..MaxListLimit.
	Limit int
	// Before, when set, returns only orders older than the order with this id
	// (ids are time-ordered).
	Before string
}

// OrderPage is one page of orders, newest first. Next is the id to pass as
// OrderFilter.Before for the next page, empty on the last page.
type OrderPage struct {
	Orders []*Order
	Next   string
}
