package checkout

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
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
	DefaultPipeline  = 2
)

// maxPriceRetries bounds how often a batch is run again because a product's
// price changed between the batch's first read and its lock.
const maxPriceRetries = 3

// BatchOptions tunes a Batch. Zero fields take their defaults.
type BatchOptions struct {
	// MaxBatch bounds the orders of one transaction; the default is
	// DefaultMaxBatch.
	MaxBatch int
	// MaxQueue bounds the orders waiting for a batch; beyond it requests
	// are refused at once with EOVERLOADED. The default is DefaultMaxQueue.
	MaxQueue int
	// Pipeline is how many batch transactions may be in flight at once; the
	// default is DefaultPipeline. Batches take their product locks in the
	// order they were formed, so a later batch writes its orders while an
	// earlier one holds the rows and commits.
	Pipeline int
	// TxTimeout bounds one batch transaction; the default is
	// DefaultTxTimeout.
	TxTimeout time.Duration
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock
	// Observe, when set, is called after each batch transaction with its
	// size (orders taken into it) and duration, and the error that failed
	// it.
	Observe func(size int, took time.Duration, err error)
	// ObserveRowsHeld, when set, is called after each batch transaction
	// that committed with how long it held its product rows: from the
	// moment LockProducts returned (the rows locked) to the moment the
	// commit returned. Every database round trip in that span delays the
	// next batch of the same SKUs. Failed transactions are not observed.
	ObserveRowsHeld func(held time.Duration)
}

// Batch is the `batch` strategy: group commit for every order. Orders of any
// number of items, for any SKUs, with or without an idempotency key, queue in
// one bounded FIFO; a committer takes everything queued, up to MaxBatch, into
// one transaction that
//
//   - reads the batch's products and the per-user quotas its limits need
//     (one statement each, no locks) and allots stock from them, to predict
//     which orders will be accepted;
//   - inserts those orders and their items in bulk, letting the unique index
//     settle idempotency keys (an order whose key turns out to be taken is
//     dropped and the prediction made again without it);
//   - locks the batch's product rows in SKU order with one statement, reads
//     the quotas again under the locks, and settles the allotment: first
//     come first served, each order all or nothing, per-user limits applied
//     within the batch and against earlier orders; inserted orders that no
//     longer fit are deleted again (rare: only when another instance or a
//     cancel moved the stock in between);
//   - takes every touched SKU's stock with one statement and adds the quotas
//     of limited SKUs with one upsert.
//
// A store whose Tx is a flashorder.BatchTx (PostgreSQL) sends each read with
// its quotas in one round trip, and the stock and quotas with the commit:
// the rows are then held for that one round trip after the lock's.
//
// The allotment's two steps, predict and settle, and the invariants each
// ends by checking, are the type allotment's; the transaction around them is
// commitInTx.
//
// The row locks are held only for the last two steps and the commit. Up to
// Pipeline transactions run at once, taking the row locks in the order their
// batches formed: while one holds the rows and commits, the next one writes
// its orders, and the next one after that fills. There is no fixed linger.
// Each request gets its own answer. Several instances may share one database:
// they lock product rows in one order and insert keys in one order, and
// nothing waits for a key while it holds a product row, so their batches
// queue on the rows and never deadlock (InTx's deadlock retry is the
// backstop).
type Batch struct {
	store flashorder.Store
	opts  BatchOptions

	queue   chan *pendingOrder
	waiting atomic.Int64 // orders queued and not abandoned
	running atomic.Int32 // committer goroutines draining the queue

	// formMu makes forming a batch and taking its turn one step, so that
	// turns follow the queue's order. Only committers take it.
	formMu   sync.Mutex
	lastTurn chan struct{} // closed once the newest batch holds its rows
}

// Pending order states: a request waits in the queue until a committer takes
// it into a batch or the request gives up first. Whoever moves it out of
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
	if opts.Pipeline <= 0 {
		opts.Pipeline = DefaultPipeline
	}
	if opts.TxTimeout <= 0 {
		opts.TxTimeout = DefaultTxTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	first := make(chan struct{})
	close(first)
	return &Batch{store: store, opts: opts, queue: make(chan *pendingOrder, opts.MaxQueue), lastTurn: first}
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
	if b.startCommitter() {
		go b.drain()
	}
	return nil
}

// startCommitter counts one more committer and reports true, unless Pipeline
// of them run already.
func (b *Batch) startCommitter() bool {
	for {
		n := b.running.Load()
		if n >= int32(b.opts.Pipeline) {
			return false
		}
		if b.running.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// drain commits batches while the queue has orders, then ends; the next
// enqueue starts a committer again.
func (b *Batch) drain() {
	batch := make([]*pendingOrder, 0, min(b.opts.MaxBatch, 64))
	for {
		b.formMu.Lock()
		batch = b.collect(batch[:0])
		var prev, mine chan struct{}
		if len(batch) > 0 {
			prev, mine = b.lastTurn, make(chan struct{})
			b.lastTurn = mine
		}
		b.formMu.Unlock()
		if len(batch) > 0 {
			b.commit(batch, prev, mine)
			clear(batch)
			continue
		}
		b.running.Add(-1)
		// An order enqueued after collect found the queue empty, while
		// every committer still counted, started none.
		if len(b.queue) == 0 || !b.startCommitter() {
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

// errPriceChanged asks commit to run a batch again: a product's price or
// payment window changed between the batch's first read, which priced its
// orders and set their payment deadlines, and its lock.
var errPriceChanged = errors.New("checkout: a price changed during the batch")

// commit runs one batch transaction and answers each of its orders. It takes
// the product locks after the batch before it (prev closed) and closes mine
// once it holds them, or when it ends without.
func (b *Batch) commit(batch []*pendingOrder, prev <-chan struct{}, mine chan struct{}) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.TxTimeout)
	defer cancel()
	var turnOnce sync.Once
	endTurn := func() { turnOnce.Do(func() { close(mine) }) }
	defer endTurn()
	// lockedAt is when the last attempt locked its rows: the attempt
	// that committed, when one did.
	var lockedAt time.Time
	locked := func() {
		lockedAt = time.Now()
		endTurn()
	}
	answers := make([]error, len(batch))
	var err error
	// Begin only once the batch before holds its rows: then this batch's
	// key inserts cannot wait on that batch while it waits on this one, and
	// no connection is held while waiting (SQLite has one).
	select {
	case <-prev:
	case <-ctx.Done():
		err = &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the database did not complete the request; retry later", Err: ctx.Err()}
	}
	for attempt := 1; err == nil; attempt++ {
		err = b.store.InTx(ctx, func(tx flashorder.Tx) error {
			return commitInTx(ctx, tx, batch, answers, locked)
		})
		if !errors.Is(err, errPriceChanged) || attempt == maxPriceRetries {
			break
		}
		err = nil
	}
	if errors.Is(err, errPriceChanged) {
		err = &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "prices changed during the order; retry", Err: err}
	}
	if err == nil && b.opts.ObserveRowsHeld != nil && !lockedAt.IsZero() {
		b.opts.ObserveRowsHeld(time.Since(lockedAt))
	}
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

// commitInTx predicts, inserts, locks, settles and writes one batch (see
// Batch and allotment). It sets answers[i] for every order; InTx may run it
// again, so it derives everything afresh each time.
func commitInTx(ctx context.Context, tx flashorder.Tx, batch []*pendingOrder, answers []error, locked func()) error {
	// Fault tests fail a batch here, before it wrote anything.
	if err := failpoint.Fail(ctx, "checkout/batch-commit"); err != nil {
		return err
	}
	a := newAllotment(batch, answers)
	skus := batchSKUs(batch)
	bt, _ := tx.(flashorder.BatchTx)
	var keys []flashorder.QuotaKey
	if bt != nil {
		// Which products have a limit is known only from the answer: ask
		// for every pair, and the store keeps those of limited products.
		keys = batchKeys(batch)
	}
	read, held, err := productsAndQuotas(ctx, tx, bt, batch, skus, keys, false)
	if err != nil {
		return err
	}
	if err := a.predict(ctx, tx, read, held); err != nil {
		return err
	}
	products, held, err := productsAndQuotas(ctx, tx, bt, batch, skus, keys, true)
	locked()
	if err != nil {
		return err
	}
	// Fault tests freeze a batch here: the product rows held, idle in the
	// transaction, as a frozen or cut-off orderd's would be.
	failpoint.Hit(ctx, "checkout/batch-locked")
	for sku, p := range products {
		if r := read[sku]; r == nil || r.PriceCents != p.PriceCents || r.PaymentWindow != p.PaymentWindow {
			return errPriceChanged
		}
	}
	accepted, err := a.settle(products, held)
	if err != nil {
		return err
	}
	if refused := a.refusedInserted(); len(refused) > 0 {
		if err := tx.DeleteOrders(ctx, refused); err != nil {
			return err
		}
	}
	take, add := totals(accepted, products)
	if bt != nil {
		return bt.TakeStocksAndCommit(ctx, take, add)
	}
	if err := tx.TakeStocks(ctx, take); err != nil {
		return err
	}
	return tx.AddQuotas(ctx, add)
}

// productsAndQuotas reads the batch's products, locking their rows when
// lock is set, and the quotas that their per-user limits need: in one round
// trip through bt (keys holding every pair of the batch) when tx has it,
// else one statement after the other.
func productsAndQuotas(ctx context.Context, tx flashorder.Tx, bt flashorder.BatchTx, batch []*pendingOrder, skus []string, keys []flashorder.QuotaKey, lock bool) (map[string]*flashorder.Product, map[flashorder.QuotaKey]int64, error) {
	if bt != nil {
		return bt.ProductsAndQuotas(ctx, skus, keys, lock)
	}
	read := tx.Products
	if lock {
		read = tx.LockProducts
	}
	products, err := read(ctx, skus)
	if err != nil {
		return nil, nil, err
	}
	held, err := tx.Quotas(ctx, limitedKeys(batch, products))
	if err != nil {
		return nil, nil, err
	}
	return products, held, nil
}

// batchSKUs returns the batch's SKUs, sorted and distinct.
func batchSKUs(batch []*pendingOrder) []string {
	var skus []string
	for _, p := range batch {
		for _, it := range p.order.Items {
			skus = append(skus, it.SKU)
		}
	}
	slices.SortFunc(skus, strings.Compare)
	return slices.Compact(skus)
}

// limitedKeys returns the (user, SKU) pairs of the batch whose product has a
// per-user limit.
func limitedKeys(batch []*pendingOrder, products map[string]*flashorder.Product) []flashorder.QuotaKey {
	return pairs(batch, func(sku string) bool { return limited(products, sku) })
}

// batchKeys returns every (user, SKU) pair of the batch.
func batchKeys(batch []*pendingOrder) []flashorder.QuotaKey {
	return pairs(batch, func(string) bool { return true })
}

// pairs returns the distinct (user, SKU) pairs of the batch whose SKU keep
// accepts, in the batch's order.
func pairs(batch []*pendingOrder, keep func(sku string) bool) []flashorder.QuotaKey {
	var keys []flashorder.QuotaKey
	seen := map[flashorder.QuotaKey]bool{}
	for _, p := range batch {
		for _, it := range p.order.Items {
			k := flashorder.QuotaKey{UserID: p.order.UserID, SKU: it.SKU}
			if keep(it.SKU) && !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys
}
