package checkout

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/flashorder/flashorder"
)

var _ flashorder.OrderPlacer = (*Batch)(nil)

// Defaults of Batch's tuning knobs.
const (
	DefaultMaxBatch  = 1000
	DefaultMaxQueue  = 20000
	DefaultTxTimeout = 10 * time.Second
)

// batchShards spreads the per-SKU queues over this many mutexes.
const batchShards = 64

// maxKeyConflicts bounds how often a batch is rerun after another instance
// stored an order under one of its idempotency keys between check and insert.
const maxKeyConflicts = 3

// Batch is the `batch` strategy (group commit). Single-item orders for one SKU
// queue in process; one transaction at a time per SKU takes them all, up to
// MaxBatch: it locks the product row once, allots stock first come first
// served, enforces per-user limits within the batch and against earlier ones,
// takes the batch's total with one update, and inserts all its orders with
// bulk inserts. Each request gets its own answer. There is no fixed linger:
// while one batch commits, the next one fills.
//
// Multi-item orders take the row strategy's path. Several instances may share
// one database: the product row lock arbitrates between their batches.
type Batch struct {
	store flashorder.Store
	row   *Row

	// MaxBatch bounds the orders of one transaction; the default is
	// DefaultMaxBatch.
	MaxBatch int
	// MaxQueue bounds the orders waiting for one SKU; beyond it requests
	// are refused at once with EOVERLOADED. The default is DefaultMaxQueue.
	MaxQueue int
	// TxTimeout bounds one batch transaction; the default is
	// DefaultTxTimeout.
	TxTimeout time.Duration
	// Now returns the current time; the default is time.Now.
	Now flashorder.Clock
	// Observe, when set, is called after each batch transaction with its
	// size and duration.
	Observe func(size int, took time.Duration, err error)

	seed   maphash.Seed
	shards [batchShards]batchShard
}

type batchShard struct {
	mu     sync.Mutex
	queues map[string]*skuQueue
}

// skuQueue holds the orders waiting for one SKU. It exists while it has
// orders or a batch in flight, so unknown SKUs leave nothing behind.
type skuQueue struct {
	pending []*pendingOrder
}

type pendingOrder struct {
	order *flashorder.Order
	done  chan error
}

// NewBatch returns the batch strategy on store.
func NewBatch(store flashorder.Store) *Batch {
	b := &Batch{store: store, row: NewRow(store), MaxBatch: DefaultMaxBatch, MaxQueue: DefaultMaxQueue,
		TxTimeout: DefaultTxTimeout, Now: time.Now, seed: maphash.MakeSeed()}
	for i := range b.shards {
		b.shards[i].queues = make(map[string]*skuQueue)
	}
	return b
}

// PlaceOrder implements flashorder.OrderPlacer.
func (b *Batch) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	if len(req.Items) != 1 {
		return b.row.PlaceOrder(ctx, req)
	}
	o, err := NewOrder(req, b.Now())
	if err != nil {
		return nil, err
	}
	p := &pendingOrder{order: o, done: make(chan error, 1)}
	if err := b.enqueue(o.Items[0].SKU, p); err != nil {
		return nil, err
	}
	// The answer comes within TxTimeout; waiting for it even when the
	// client left keeps the answer (and the idempotency record) true.
	if err := <-p.done; err != nil {
		return nil, err
	}
	return o, nil
}

// QueueDepth returns how many orders wait in the queues, over all SKUs, not
// counting the batches being committed. It takes each shard's mutex in turn,
// briefly: cheap enough for a metrics scrape, not for the hot path.
func (b *Batch) QueueDepth() int {
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for _, q := range sh.queues {
			n += len(q.pending)
		}
		sh.mu.Unlock()
	}
	return n
}

func (b *Batch) enqueue(sku string, p *pendingOrder) error {
	sh := &b.shards[maphash.String(b.seed, sku)%batchShards]
	sh.mu.Lock()
	q := sh.queues[sku]
	start := q == nil
	if start {
		q = &skuQueue{}
		sh.queues[sku] = q
	}
	if len(q.pending) >= b.MaxQueue {
		sh.mu.Unlock()
		return flashorder.Errorf(flashorder.EOVERLOADED, "too many orders waiting for %q; retry later", sku)
	}
	q.pending = append(q.pending, p)
	sh.mu.Unlock()
	if start {
		go b.drain(sh, sku, q)
	}
	return nil
}

// drain commits the SKU's queue batch by batch until it is empty, then
// removes it.
func (b *Batch) drain(sh *batchShard, sku string, q *skuQueue) {
	for {
		sh.mu.Lock()
		n := min(len(q.pending), b.MaxBatch)
		if n == 0 {
			delete(sh.queues, sku)
			sh.mu.Unlock()
			return
		}
		batch := q.pending[:n:n]
		q.pending = q.pending[n:]
		if len(q.pending) == 0 {
			q.pending = nil // let the backing array go
		}
		sh.mu.Unlock()
		b.commit(sku, batch)
	}
}

// errKeyConflict asks commit to rerun a batch whose insert met an idempotency
// key stored meanwhile by another instance.
var errKeyConflict = errors.New("checkout: idempotency key stored concurrently")

// commit runs one batch transaction and answers each of its orders.
func (b *Batch) commit(sku string, batch []*pendingOrder) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), b.TxTimeout)
	defer cancel()
	answers := make([]error, len(batch))
	var err error
	for attempt := 0; attempt < maxKeyConflicts; attempt++ {
		err = b.store.InTx(ctx, func(tx flashorder.Tx) error {
			return b.commitInTx(ctx, tx, sku, batch, answers)
		})
		if !errors.Is(err, errKeyConflict) {
			break
		}
	}
	if errors.Is(err, errKeyConflict) {
		err = &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "retry later", Err: err}
	}
	if b.Observe != nil {
		b.Observe(len(batch), time.Since(start), err)
	}
	for i, p := range batch {
		if err != nil {
			p.done <- err
		} else {
			p.done <- answers[i]
		}
	}
}

// commitInTx allots the batch's stock first come first served and writes the
// accepted orders. It sets answers[i] for every order; the transaction may
// run again, so it derives everything afresh each time.
func (b *Batch) commitInTx(ctx context.Context, tx flashorder.Tx, sku string, batch []*pendingOrder, answers []error) error {
	products, err := tx.Products(ctx, []string{sku})
	if err != nil {
		return err
	}
	product := products[sku]
	if product == nil {
		for i := range answers {
			answers[i] = flashorder.Errorf(flashorder.EUNKNOWNPRODUCT, "unknown product %q", sku)
		}
		return nil
	}
	stock, err := tx.LockStock(ctx, sku)
	if err != nil {
		return err
	}
	taken, err := takenKeys(ctx, tx, batch)
	if err != nil {
		return err
	}
	held := map[string]int64{}
	if product.PerUserLimit > 0 {
		users := make([]string, 0, len(batch))
		for _, p := range batch {
			users = append(users, p.order.UserID)
		}
		if held, err = tx.Quotas(ctx, sku, users); err != nil {
			return err
		}
	}

	accepted := make([]*flashorder.Order, 0, len(batch))
	added := map[string]int64{}
	var total int64
	for i, p := range batch {
		o := p.order
		q := o.Items[0].Quantity
		switch {
		case o.IdempotencyKey != "" && taken[o.IdempotencyKey]:
			answers[i] = flashorder.ErrIdempotencyKeyTaken
			continue
		case product.PerUserLimit > 0 && held[o.UserID]+q > product.PerUserLimit:
			answers[i] = limitExceeded(o.UserID, sku, product.PerUserLimit)
			continue
		case stock < q:
			answers[i] = soldOut(sku)
			continue
		}
		answers[i] = nil
		if o.IdempotencyKey != "" {
			taken[o.IdempotencyKey] = true // a twin later in this batch replays this one
		}
		stock -= q
		total += q
		held[o.UserID] += q
		added[o.UserID] += q
		priceOrder(o, products)
		accepted = append(accepted, o)
	}
	if len(accepted) == 0 {
		return nil
	}
	ok, err := tx.TakeStock(ctx, sku, total)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("checkout: stock of %q changed while its row was locked", sku)
	}
	if err := tx.AddQuotas(ctx, sku, added); err != nil {
		return err
	}
	err = tx.InsertOrders(ctx, accepted...)
	if errors.Is(err, flashorder.ErrIdempotencyKeyTaken) {
		return errKeyConflict
	}
	return err
}

// takenKeys returns the batch's idempotency keys that stored orders hold.
func takenKeys(ctx context.Context, tx flashorder.Tx, batch []*pendingOrder) (map[string]bool, error) {
	var keys []string
	for _, p := range batch {
		if p.order.IdempotencyKey != "" {
			keys = append(keys, p.order.IdempotencyKey)
		}
	}
	if len(keys) == 0 {
		return map[string]bool{}, nil
	}
	return tx.TakenKeys(ctx, keys)
}
