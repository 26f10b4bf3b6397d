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

	// QuotaHolders returns what each user holds of sku in active orders,
	// for the users who hold any, with one read. It returns ErrTooMany,
	// reading no further, when more than max users hold some.
	QuotaHolders(ctx context.Context, sku string, max int) (map[string]int64, error)

	// InTx runs fn in one database transaction: all of fn's writes commit
	// together when fn returns nil, and none of them otherwise. InTx may run
	// fn more than once when the database asks for a retry (deadlock,
	// serialization failure), so fn must not have effects outside tx.
	InTx(ctx context.Context, fn func(tx Tx) error) error

	// Ping checks that the database answers.
	Ping(ctx context.Context) error

	// EventLog is the outbox of order events (empty while events are off).
	EventLog
}

// ProductsReader is implemented by a Store that reads many products with one
// read: a cache refreshing a catalogue's SKUs pays one round trip for all of
// them instead of one per SKU.
type ProductsReader interface {
	// Products returns the products of skus that exist, in no set order,
	// each as Store.Product would return it; a SKU without a product is
	// left out.
	Products(ctx context.Context, skus []string) ([]*Product, error)
}

// Tx is the set of primitives that checkout strategies compose inside one
// database transaction, in groups by purpose; a helper that needs one group
// takes that group. Every method may also return a database error.
//
// Lock order: a transaction locks product rows (sorted by SKU) before it
// touches the user_purchases counters of those SKUs. Every writer of a
// counter holds its product's row lock, so counters never deadlock and a
// read of them under that lock is current.
type Tx interface {
	ProductTx
	StockTx
	SegmentTx
	QuotaTx
	OrderTx
	LifecycleTx
	FenceTx
}

// BatchTx is what a Tx may add for the batch strategy: its steps with fewer
// round trips to the database, each sending together statements that do not
// wait for each other's answers (PostgreSQL's pipeline). A Tx without it
// runs the same steps one statement at a time (Products or LockProducts,
// Quotas, TakeStocks, AddQuotas), and the strategy composes them itself.
type BatchTx interface {
	// ProductsAndQuotas returns what Products returns for skus, or
	// LockProducts when lock is set, and what Quotas returns for those of
	// keys whose product, as returned, has a per-user limit. With lock the
	// quotas are read after the rows are locked, so that they are current:
	// every writer of a counter holds its product's row.
	ProductsAndQuotas(ctx context.Context, skus []string, keys []QuotaKey, lock bool) (map[string]*Product, map[QuotaKey]int64, error)
	// TakeStocksAndCommit does what TakeStocks(take) and AddQuotas(add)
	// do and commits the transaction: all in one round trip, the commit
	// sent only to run if both statements succeed. It is the
	// transaction's last statement: the function InTx runs returns its
	// error right after. When it fails, nothing of the transaction
	// commits, unless the connection was lost at the commit (then, as
	// with any commit, the outcome is unknown).
	TakeStocksAndCommit(ctx context.Context, take map[string]int64, add map[QuotaKey]int64) error
}

// ProductTx reads and locks product rows inside a transaction.
type ProductTx interface {
	// Products returns the products among skus that exist, keyed by SKU,
	// without locking them.
	Products(ctx context.Context, skus []string) (map[string]*Product, error)
	// LockProducts locks the product rows of skus in ascending byte order of
	// SKU, with one statement, and returns those that exist as they are under
	// the lock, keyed by SKU. The rows stay locked until the transaction ends.
	// Sorted locking is what keeps batches of several instances on one
	// database from deadlocking.
	LockProducts(ctx context.Context, skus []string) (map[string]*Product, error)
}

// StockTx takes units from a product row (strategies row, lock and batch).
type StockTx interface {
	// TakeStocks takes take[sku] units of every SKU in take with one
	// statement. The caller holds their rows (LockProducts) and has checked
	// that the units are there; a row without them is an error.
	TakeStocks(ctx context.Context, take map[string]int64) error
	// TakeStock takes qty units of sku when at least qty are available, and
	// returns false, changing nothing, when fewer are. When it returns true
	// the product row stays locked until the transaction ends.
	TakeStock(ctx context.Context, sku string, qty int64) (bool, error)
}

// SegmentTx takes units from a product's stock segments (strategy segment).
type SegmentTx interface {
	// TakeFromSegment takes qty units of sku from one of its n stock
	// segments that has them, chosen at random, and returns false, changing
	// nothing, when no single segment has qty units. A false may leave a
	// segment it looked at locked (PostgreSQL keeps a row that a locking
	// read or an update waited for and then found no longer matching): the
	// transaction must then not go on to RefillSegments of that sku, whose
	// lock order (product row, then segments) it would invert. End it and
	// refill in a new one.
	TakeFromSegment(ctx context.Context, sku string, qty int64, n int) (bool, error)
	// RefillSegments locks sku's product row and all its segments, takes
	// qty units from their total, and spreads the rest evenly over at most
	// n segments. It returns false, changing nothing, when the total is
	// short. Call it before any TakeFromSegment of sku in the transaction.
	RefillSegments(ctx context.Context, sku string, qty int64, n int) (bool, error)
}

// QuotaTx keeps what each user holds of each SKU in active orders, for the
// per-user limits.
type QuotaTx interface {
	// Quotas returns how many units each (user, SKU) pair of keys holds in
	// active orders, with one statement (absent pairs hold none).
	Quotas(ctx context.Context, keys []QuotaKey) (map[QuotaKey]int64, error)
	// ReserveQuota adds qty to what userID holds of sku in active orders. When
	// limit > 0 and the new total would exceed it, nothing changes and it
	// returns false.
	ReserveQuota(ctx context.Context, userID, sku string, qty, limit int64) (bool, error)
	// AddQuotas adds add[k] units to what each user holds of each SKU, with
	// one upsert. Counters are kept for the SKUs with a per-user limit only
	// (PutProduct rebuilds a SKU's counters when it gains a limit).
	AddQuotas(ctx context.Context, add map[QuotaKey]int64) error
	// ReleaseQuota subtracts qty from what userID holds of sku in active
	// orders (never below zero).
	ReleaseQuota(ctx context.Context, userID, sku string, qty int64) error
}

// OrderTx writes orders.
type OrderTx interface {
	// InsertOrders inserts, in bulk, the orders whose idempotency keys no
	// stored order holds, with their items, and returns the keys of those it
	// left out because a stored order (or one inserted by a concurrent
	// transaction that committed) holds them. The unique index decides; no
	// order is read first.
	InsertOrders(ctx context.Context, orders []*Order) (taken map[string]bool, err error)
	// DeleteOrders deletes the orders with the given ids, and their items,
	// that this transaction inserted and then could not accept.
	DeleteOrders(ctx context.Context, ids []string) error
}

// LifecycleTx moves orders through their lifecycle and gives their stock back.
type LifecycleTx interface {
	// TransitionOrder moves order id from status from to status to with one
	// conditional update, and returns the order as it is now, with its items.
	// When the order is not in status from it changes nothing and returns
	// EINVALIDSTATE; when there is no such order, ENOTFOUND.
	TransitionOrder(ctx context.Context, id string, from, to Status) (*Order, error)
	// OrdersDue returns the ids of at most limit orders still created whose
	// payment window closed before now (Order.Due), the earliest closed
	// first, without locking them: those whose ExpiresAt is before now, and
	// those without an ExpiresAt created before now - defaultTimeout.
	OrdersDue(ctx context.Context, now time.Time, defaultTimeout time.Duration, limit int) ([]string, error)
	// ReturnStock adds qty units of sku back to its available stock.
	ReturnStock(ctx context.Context, sku string, qty int64) error
}

// FenceTx checks a lock's fencing token against the newest that wrote a SKU
// (strategy lock).
type FenceTx interface {
	// Fence records token (a Lock's fencing token) as the newest that wrote
	// sku and returns true, or changes nothing and returns false when sku
	// already carries a newer token (its lock went to a newer holder) or
	// does not exist. The product row stays locked until the transaction
	// ends, so the check holds until the commit.
	Fence(ctx context.Context, sku string, token int64) (bool, error)
}

// QuotaKey names what one user holds of one SKU.
type QuotaKey struct {
	UserID string
	SKU    string
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
	// Fingerprint identifies the request's content (see
	// OrderRequest.Fingerprint). Empty until needed: checkout.Idempotent
	// fills it for a keyed request, a strategy for the order it stores.
	Fingerprint string
}

// ProductChanges tells every orderd instance that a product changed, so that
// each drops what it cached of it (the product page, sold-out marks). A
// message may be lost (a reconnect): receivers bound their staleness by a
// TTL as well.
type ProductChanges interface {
	// Publish announces that sku changed.
	Publish(ctx context.Context, sku string) error
	// Subscribe calls fn with each SKU announced from its return on, in
	// one goroutine, until ctx ends.
	Subscribe(ctx context.Context, fn func(sku string)) error
}

// Clock returns the current time; tests replace it.
type Clock func() time.Time
