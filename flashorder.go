// Package flashorder is the vocabulary of the flashorder order service: the domain
// types (products, orders, their items and statuses), request validation, the error
// codes that every layer speaks, and the interfaces that the storage, locking,
// idempotency and checkout packages implement.
//
// It imports the standard library only. The packages named after a dependency
// (gormdb, inmem, http, ...) implement these interfaces, and cmd/orderd wires them.
package flashorder

import (
	"context"
	"time"
)

// Store is the durable state of flashorder: products, orders and the per-user
// purchase counters, kept in one database.
type Store interface {
	// PutProduct creates or replaces the product p.SKU. The change of p.Stock
	// against the stored stock is recorded as a restock. It returns the stored
	// product.
	PutProduct(ctx context.Context, p Product) (*Product, error)
	// Product returns the product with the given SKU, or ENOTFOUND.
	Product(ctx context.Context, sku string) (*Product, error)

	// Order returns the order with the given id, or ENOTFOUND.
	Order(ctx context.Context, id string) (*Order, error)
	// OrderByIdempotencyKey returns the order created under key, or ENOTFOUND.
	OrderByIdempotencyKey(ctx context.Context, key string) (*Order, error)
	// Orders returns one page of a user's orders, newest first.
	Orders(ctx context.Context, filter OrderFilter) (*OrderPage, error)

	// Audit checks the stock invariant of every product from the database.
	Audit(ctx context.Context) (*Audit, error)

	// InTx runs fn in one database transaction: all of fn's writes commit
	// together when fn returns nil, and none of them otherwise. InTx may run
	// fn more than once when the database asks for a retry (deadlock,
	// serialization failure), so fn must not have effects outside tx.
	InTx(ctx context.Context, fn func(tx Tx) error) error

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
}

// Tx is the set of primitives that checkout strategies compose inside one
// database transaction. Every method may also return a database error.
type Tx interface {
	// Products returns the products among skus that exist, keyed by SKU,
	// without locking them.
	Products(ctx context.Context, skus []string) (map[string]*Product, error)
	// ReserveQuota adds qty to what userID holds of sku in active orders. When
	// limit > 0 and the new total would exceed it, nothing changes and it
	// returns false. The counter row stays locked until the transaction ends.
	ReserveQuota(ctx context.Context, userID, sku string, qty, limit int64) (bool, error)
	// TakeStock takes qty units of sku when at least qty are available, and
	// returns false, changing nothing, when fewer are.
	TakeStock(ctx context.Context, sku string, qty int64) (bool, error)
	// InsertOrders inserts orders with their items. It returns
	// ErrIdempotencyKeyTaken when one of them reuses a stored idempotency key.
	InsertOrders(ctx context.Context, orders ...*Order) error
	// Fence records token (a Lock's fencing token) as the newest that wrote
	// sku and returns true, or changes nothing and returns false when sku
	// already carries a newer token (its lock went to a newer holder) or
	// does not exist. The product row stays locked until the transaction
	// ends, so the check holds until the commit.
	Fence(ctx context.Context, sku string, token int64) (bool, error)
}

// OrderPlacer turns an order request into an order: one implementation per
// deduction strategy (see package checkout).
type OrderPlacer interface {
	// PlaceOrder takes stock for every item of req and stores the order, or
	// changes nothing and returns EUNKNOWNPRODUCT, ELIMITEXCEEDED, ESOLDOUT,
	// EOVERLOADED, EUNAVAILABLE or ErrIdempotencyKeyTaken.
	PlaceOrder(ctx context.Context, req *PlaceOrderRequest) (*Order, error)
}

// PlaceOrderRequest is a validated order request with the idempotency data that
// the stored order keeps.
type PlaceOrderRequest struct {
	OrderRequest
	// IdempotencyKey is the request's Idempotency-Key header; empty when absent.
	IdempotencyKey string
	// Fingerprint identifies the request's content (see OrderRequest.Fingerprint).
	Fingerprint string
}

// Clock returns the current time; tests replace it.
type Clock func() time.Time
