package checkout

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/internal/failpoint"
)

var _ flashorder.OrderPlacer = (*Batch)(nil)

// Defaults of BatchOptions.
const (
	DefaultMaxBatch  = 1000
	DefaultMaxQueue  = 20000
	DefaultTxTimeout = 10 * time.Second
)

// BatchOptions tunes a Batch. Zero fields take their defaults.
type BatchOptions struct {
	// MaxBatch bounds the orders of one transaction; the default is
	// DefaultMaxBatch.
	MaxBatch int
	// MaxQueue bounds the orders waiting for a batch; beyond it requests
	// are refused at once with EOVERLOADED. The default is DefaultMaxQueue.
	MaxQueue int
	// TxTimeout bounds one batch transaction; the default is
	// DefaultTxTimeout.
	TxTimeout time.Duration
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock
	// Observe, when set, is called after each batch transaction with its
	// size (orders taken into it) and duration, and the error that failed
	// it.
	Observe func(size int, took time.Duration, err error)
}

// Batch is the `batch` strategy: group commit for every order. Orders of any
// number of items, for any SKUs, with or without an idempotency key, queue in
// one bounded FIFO; one transaction at a time takes everything queued, up to
// MaxBatch, and in that transaction
//
//   - locks the batch's product rows in SKU order with one statement,
//   - reads the per-user quotas the batch's limits need with one statement,
//   - allots stock first come first served, each order all or nothing, with
//     per-user limits applied within the batch and against earlier orders,
//   - inserts the accepted orders and their items in bulk, letting the
//     unique index settle idempotency keys (an order whose key turns out to
//     be taken is dropped and the stock allotted again without it),
//   - takes every touched SKU's stock with one statement and adds the quotas
//     with one upsert.
//
// Each request gets its own answer. There is no fixed linger: while one batch
// commits, the next one fills. Several instances may share one database: they
// lock product rows in one order, so their batches queue on the rows and
// never deadlock (InTx's deadlock retry is the backstop).
type Batch struct {
	store flashorder.Store
	opts  BatchOptions

	queue   chan *pendingOrder
	waiting atomic.Int64 // orders queued and not abandoned
	running atomic.Bool  // a committer goroutine is draining the queue
}

// Pending order states: a request waits in the queue until the committer
// takes it into a batch or the request gives up first. Whoever moves it out of
// queued decides.
const (
	queued int32 = iota
	taken
	abandoned
)

type pendingOrder struct {
	order *flashorder.Order
	state atomic.Int32
	done  chan error
}

// NewBatch returns the batch strategy on store.
func NewBatch(store flashorder.Store, opts BatchOptions) *Batch {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = DefaultMaxQueue
	}
	if opts.TxTimeout <= 0 {
		opts.TxTimeout = DefaultTxTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Batch{store: store, opts: opts, queue: make(chan *pendingOrder, opts.MaxQueue)}
}

// PlaceOrder implements flashorder.OrderPlacer. An order still queued when
// ctx ends leaves the queue and returns EUNAVAILABLE, changing nothing; once
// its batch took it, PlaceOrder waits for the batch's answer (at most
// TxTimeout), so that the answer, and the idempotency record made from it,
// stays true.
func (b *Batch) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	o, err := NewOrder(req, b.opts.Now())
	if err != nil {
		return nil, err
	}
	p := &pendingOrder{order: o, done: make(chan error, 1)}
	if err := b.enqueue(p); err != nil {
		return nil, err
	}
	select {
	case err := <-p.done:
		return answer(o, err)
	case <-ctx.Done():
		if p.state.CompareAndSwap(queued, abandoned) {
			b.waiting.Add(-1)
			return nil, &flashorder.Error{Code: flashorder.EUNAVAILABLE,
				Message: "the request ended before its order reached the database; nothing was ordered", Err: ctx.Err()}
		}
		return answer(o, <-p.done)
	}
}

func answer(o *flashorder.Order, err error) (*flashorder.Order, error) {
	if err != nil {
		return nil, err
	}
	return o, nil
}

// QueueDepth returns how many orders wait for a batch, not counting the
// batch being committed.
func (b *Batch) QueueDepth() int { return int(b.waiting.Load()) }

func (b *Batch) enqueue(p *pendingOrder) error {
	if b.waiting.Add(1) > int64(b.opts.MaxQueue) {
		b.waiting.Add(-1)
		return flashorder.Errorf(flashorder.EOVERLOADED, "too many orders waiting; retry shortly")
	}
	select {
	case b.queue <- p:
	default:
		// The channel still holds abandoned orders that the committer
		// has not yet skipped.
		b.waiting.Add(-1)
		return flashorder.Errorf(flashorder.EOVERLOADED, "too many orders waiting; retry shortly")
	}
	if b.running.CompareAndSwap(false, true) {
		go b.drain()
	}
	return nil
}

// drain commits the queue batch by batch while it has orders, then ends; the
// next enqueue starts it again. One committer at a time.
func (b *Batch) drain() {
	batch := make([]*pendingOrder, 0, min(b.opts.MaxBatch, 64))
	for {
		batch = b.collect(batch[:0])
		if len(batch) > 0 {
			b.commit(batch)
			clear(batch)
			continue
		}
		b.running.Store(false)
		// An order enqueued after collect found the queue empty but before
		// running was cleared saw a committer running and started none.
		if len(b.queue) == 0 || !b.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// collect appends to batch the queued orders, oldest first, up to MaxBatch,
// skipping those whose requests gave up.
func (b *Batch) collect(batch []*pendingOrder) []*pendingOrder {
	for len(batch) < b.opts.MaxBatch {
		select {
		case p := <-b.queue:
			if p.state.CompareAndSwap(queued, taken) {
				b.waiting.Add(-1)
				batch = append(batch, p)
			}
		default:
			return batch
		}
	}
	return batch
}

// commit runs one batch transaction and answers each of its orders.
func (b *Batch) commit(batch []*pendingOrder) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.TxTimeout)
	defer cancel()
	answers := make([]error, len(batch))
	err := b.store.InTx(ctx, func(tx flashorder.Tx) error {
		return commitInTx(ctx, tx, batch, answers)
	})
	if b.opts.Observe != nil {
		b.opts.Observe(len(batch), time.Since(start), err)
	}
	for i, p := range batch {
		if err != nil {
			p.done <- err
		} else {
			p.done <- answers[i]
		}
	}
}

// commitInTx allots the batch's stock and writes the accepted orders. It sets
// answers[i] for every order; InTx may run it again, so it derives everything
// afresh each time.
func commitInTx(ctx context.Context, tx flashorder.Tx, batch []*pendingOrder, answers []error) error {
	// Fault tests fail a batch here: its rows locked, nothing written.
	if err := failpoint.Fail(ctx, "checkout/batch-commit"); err != nil {
		return err
	}
	a := newAllotment(batch, answers)
	var err error
	if a.products, err = tx.LockProducts(ctx, a.skus()); err != nil {
		return err
	}
	if a.held, err = tx.Quotas(ctx, a.limitedKeys()); err != nil {
		return err
	}
	for {
		a.run()
		fresh := a.uninserted()
		if len(fresh) == 0 {
			break
		}
		keysTaken, err := tx.InsertOrders(ctx, fresh)
		if err != nil {
			return err
		}
		a.markInserted(fresh, keysTaken)
		if len(keysTaken) == 0 {
			break
		}
		// Every order that went in stays accepted when the allotment runs
		// again without the ones whose keys were taken: it only ever has
		// more stock and quota left for each order.
	}
	take, add := a.totals()
	if err := tx.TakeStocks(ctx, take); err != nil {
		return err
	}
	return tx.AddQuotas(ctx, add)
}

// allotment decides which orders of a batch are accepted: first come first
// served, each all or nothing, refusals in the API's precedence (unknown
// product, then per-user limit, then stock).
type allotment struct {
	batch   []*pendingOrder
	answers []error

	products map[string]*flashorder.Product // locked rows
	held     map[flashorder.QuotaKey]int64  // quotas of limited SKUs before the batch
	keyTaken map[string]bool                // keys stored by other orders
	inserted map[*flashorder.Order]bool     // orders this transaction inserted
	accepted []*flashorder.Order            // the last run's accepted orders
	scratchH map[flashorder.QuotaKey]int64  // quotas during a run
	scratchS map[string]int64               // stock during a run
}

func newAllotment(batch []*pendingOrder, answers []error) *allotment {
	return &allotment{batch: batch, answers: answers, keyTaken: map[string]bool{}, inserted: map[*flashorder.Order]bool{}}
}

// skus returns the batch's SKUs, sorted and distinct.
func (a *allotment) skus() []string {
	var skus []string
	for _, p := range a.batch {
		for _, it := range p.order.Items {
			skus = append(skus, it.SKU)
		}
	}
	slices.SortFunc(skus, strings.Compare)
	return slices.Compact(skus)
}

// limitedKeys returns the (user, SKU) pairs of the batch whose product has a
// per-user limit.
func (a *allotment) limitedKeys() []flashorder.QuotaKey {
	var keys []flashorder.QuotaKey
	seen := map[flashorder.QuotaKey]bool{}
	for _, p := range a.batch {
		for _, it := range p.order.Items {
			k := flashorder.QuotaKey{UserID: p.order.UserID, SKU: it.SKU}
			if pr := a.products[it.SKU]; pr != nil && pr.PerUserLimit > 0 && !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// run allots the batch from the locked stock and the quotas, and sets every
// answer.
func (a *allotment) run() {
	a.scratchS = make(map[string]int64, len(a.products))
	for sku, p := range a.products {
		a.scratchS[sku] = p.Stock
	}
	a.scratchH = make(map[flashorder.QuotaKey]int64, len(a.held))
	for k, n := range a.held {
		a.scratchH[k] = n
	}
	a.accepted = a.accepted[:0]
	owner := map[string]bool{} // keys whose first order in the batch was seen
	for i, p := range a.batch {
		o := p.order
		if k := o.IdempotencyKey; k != "" {
			// The first order of a key in the batch owns it; a later twin
			// is told the key is taken, and the HTTP layer replays the
			// owner's stored order to it.
			if owner[k] || a.keyTaken[k] {
				a.answers[i] = flashorder.ErrIdempotencyKeyTaken
				owner[k] = true
				continue
			}
			owner[k] = true
		}
		if a.answers[i] = a.refusal(o); a.answers[i] != nil {
			continue
		}
		for _, it := range o.Items {
			a.scratchS[it.SKU] -= it.Quantity
			a.scratchH[flashorder.QuotaKey{UserID: o.UserID, SKU: it.SKU}] += it.Quantity
		}
		priceOrder(o, a.products)
		a.accepted = append(a.accepted, o)
	}
}

// refusal returns why o cannot be accepted with the stock and quotas left,
// or nil.
func (a *allotment) refusal(o *flashorder.Order) error {
	for _, it := range o.Items {
		if a.products[it.SKU] == nil {
			return flashorder.Errorf(flashorder.EUNKNOWNPRODUCT, "unknown product %q", it.SKU)
		}
	}
	for _, it := range o.Items {
		limit := a.products[it.SKU].PerUserLimit
		if limit > 0 && a.scratchH[flashorder.QuotaKey{UserID: o.UserID, SKU: it.SKU}]+it.Quantity > limit {
			return limitExceeded(o.UserID, it.SKU, limit)
		}
	}
	for _, it := range o.Items {
		if a.scratchS[it.SKU] < it.Quantity {
			return soldOut(it.SKU)
		}
	}
	return nil
}

// uninserted returns the accepted orders not inserted yet.
func (a *allotment) uninserted() []*flashorder.Order {
	var fresh []*flashorder.Order
	for _, o := range a.accepted {
		if !a.inserted[o] {
			fresh = append(fresh, o)
		}
	}
	return fresh
}

// markInserted records which of fresh went in: all but those whose keys
// another order holds.
func (a *allotment) markInserted(fresh []*flashorder.Order, keysTaken map[string]bool) {
	for _, o := range fresh {
		if o.IdempotencyKey != "" && keysTaken[o.IdempotencyKey] {
			a.keyTaken[o.IdempotencyKey] = true
			continue
		}
		a.inserted[o] = true
	}
}

// totals returns the stock to take per SKU and the quota to add per user and
// SKU for the accepted orders.
func (a *allotment) totals() (map[string]int64, map[flashorder.QuotaKey]int64) {
	take := map[string]int64{}
	add := map[flashorder.QuotaKey]int64{}
	for _, o := range a.accepted {
		for _, it := range o.Items {
			take[it.SKU] += it.Quantity
			add[flashorder.QuotaKey{UserID: o.UserID, SKU: it.SKU}] += it.Quantity
		}
	}
	return take, add
}
