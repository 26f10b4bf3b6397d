package checkout

import (
	"context"
	"errors"
	"log/slog"

	"github.com/flashorder/flashorder"
)

var _ flashorder.OrderPlacer = (*Idempotent)(nil)

// OrderFinder finds the order stored under an idempotency key: the
// database's word on a key that the IdempotencyStore does not know (it
// restarted, forgot the key, or another instance placed the order).
type OrderFinder interface {
	OrderByIdempotencyKey(ctx context.Context, key string) (*flashorder.Order, error)
}

// Idempotent places each order request with an Idempotency-Key at most once,
// in front of any strategy: the first request claims the key in an
// IdempotencyStore and runs; later ones with the same content end the same
// way (the order, or the stored refusal, replayed), and ones with other
// content are refused with EKEYREUSED. Requests without a key pass through.
//
// The store is the fast guard; the database's unique key on an order's
// idempotency key is the final one. Whenever the placement fails with
// something the store could have prevented (flashorder.ErrIdempotencyKeyTaken,
// or a refusal that an earlier order under the key may explain), the order
// stored under the key is looked up and replayed.
type Idempotent struct {
	next   flashorder.OrderPlacer
	keys   flashorder.IdempotencyStore
	orders OrderFinder
	logger *slog.Logger

	// Durable, when set, is called before an order found in the database
	// is replayed, and must return nil only once everything committed so
	// far would survive the loss of the database server (gormdb.DB's
	// WaitDurable: with synchronous standbys, a commit that waits for
	// them). An order's commit can end without that wait (orderd gave up
	// on it, PostgreSQL kept it locally): its first answer was a failure,
	// and its replay must not acknowledge it before it is replicated. An
	// error answers the replay as unavailable, for a later retry.
	Durable func(ctx context.Context) error
}

// NewIdempotent returns next behind the keys store, with orders as the final
// word on a key. A nil logger is slog.Default().
func NewIdempotent(next flashorder.OrderPlacer, keys flashorder.IdempotencyStore, orders OrderFinder, logger *slog.Logger) *Idempotent {
	if logger == nil {
		logger = slog.Default()
	}
	return &Idempotent{next: next, keys: keys, orders: orders, logger: logger}
}

// PlaceOrder implements flashorder.OrderPlacer: Place without telling whether
// the answer was replayed.
func (p *Idempotent) PlaceOrder(ctx context.Context, req *flashorder.PlaceOrderRequest) (*flashorder.Order, error) {
	o, _, err := p.Place(ctx, req)
	return o, err
}

// Place places req, once per idempotency key. It returns the order, or the
// error: a refusal (stored for the key's retries), or a failure (nothing
// stored: a retry runs again). replayed reports that the outcome is an
// earlier request's. It fills req.Fingerprint when empty.
func (p *Idempotent) Place(ctx context.Context, req *flashorder.PlaceOrderRequest) (order *flashorder.Order, replayed bool, err error) {
	if req.IdempotencyKey == "" {
		order, err = p.next.PlaceOrder(ctx, req)
		return order, false, err
	}
	if req.Fingerprint == "" {
		req.Fingerprint = req.OrderRequest.Fingerprint()
	}
	rec, err := p.keys.Claim(ctx, req.IdempotencyKey, req.Fingerprint)
	switch {
	case err != nil:
		return nil, false, err
	case rec != nil:
		return p.claimed(ctx, req, rec)
	}

	// The claim is ours: it must end completed or released, even on panic.
	completed := false
	defer func() {
		if !completed {
			if err := p.keys.Release(context.WithoutCancel(ctx), req.IdempotencyKey); err != nil {
				p.logger.Warn("release idempotency claim", "err", err)
			}
		}
	}()
	outcome, replayed, err := p.run(ctx, req)
	if err != nil {
		return nil, false, err
	}
	completed = p.complete(ctx, req.IdempotencyKey, outcome)
	return outcome.Order, replayed, outcome.Err()
}

// run places the order under a key this request claimed and returns its
// outcome, or a failure that must not be stored.
func (p *Idempotent) run(ctx context.Context, req *flashorder.PlaceOrderRequest) (flashorder.Outcome, bool, error) {
	order, err := p.next.PlaceOrder(ctx, req)
	if err == nil {
		return flashorder.Outcome{Order: order}, false, nil
	}
	taken := errors.Is(err, flashorder.ErrIdempotencyKeyTaken)
	if !taken && !refusal(err) {
		return flashorder.Outcome{}, false, err
	}
	// The key may belong to an order this process never saw (a restart,
	// another instance): the database is the final word.
	stored, lookupErr := p.orders.OrderByIdempotencyKey(ctx, req.IdempotencyKey)
	switch {
	case lookupErr == nil && stored.Fingerprint != req.Fingerprint:
		return flashorder.Outcome{}, false, errKeyReused()
	case lookupErr == nil:
		if err := p.durable(ctx); err != nil {
			return flashorder.Outcome{}, false, err
		}
		return flashorder.Outcome{Order: stored}, true, nil
	case flashorder.ErrorCode(lookupErr) != flashorder.ENOTFOUND:
		return flashorder.Outcome{}, false, lookupErr
	case taken:
		return flashorder.Outcome{}, false, &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "retry later", Err: err}
	}
	return flashorder.Outcome{Refusal: flashorder.NewRefusal(err)}, false, nil
}

// claimed answers a request whose key was claimed before: the stored
// outcome, replayed, or a refusal.
func (p *Idempotent) claimed(ctx context.Context, req *flashorder.PlaceOrderRequest, rec *flashorder.IdempotencyRecord) (*flashorder.Order, bool, error) {
	switch {
	case rec.Fingerprint != req.Fingerprint:
		return nil, false, errKeyReused()
	case rec.Outcome == nil:
		// A claim can outlive its request: the owner committed the order
		// but could neither store the outcome nor release the claim (Redis
		// stopped answering), or died after the commit. The database has
		// the final word, as for a key this process never saw.
		if stored, err := p.orders.OrderByIdempotencyKey(ctx, req.IdempotencyKey); err == nil && stored.Fingerprint == req.Fingerprint {
			if err := p.durable(ctx); err != nil {
				return nil, false, err
			}
			return stored, true, nil
		}
		return nil, false, flashorder.Errorf(flashorder.EINPROGRESS, "a request with this Idempotency-Key is still in flight")
	default:
		return rec.Outcome.Order, true, rec.Outcome.Err()
	}
}

// durable waits, when Durable is set, until an order read from the database
// would survive the loss of its server.
func (p *Idempotent) durable(ctx context.Context) error {
	if p.Durable == nil {
		return nil
	}
	if err := p.Durable(ctx); err != nil {
		return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "retry later", Err: err}
	}
	return nil
}

// complete stores outcome for key and reports whether it did.
func (p *Idempotent) complete(ctx context.Context, key string, outcome flashorder.Outcome) bool {
	if err := p.keys.Complete(context.WithoutCancel(ctx), key, outcome); err != nil {
		p.logger.Warn("store idempotent outcome", "err", err)
		return false
	}
	return true
}

// refusal reports whether err is a business refusal, kept for the key's
// retries: retrying it would not change the outcome by itself.
func refusal(err error) bool {
	switch flashorder.ErrorCode(err) {
	case flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED, flashorder.EUNKNOWNPRODUCT, flashorder.ENOTSTARTED, flashorder.ESALEENDED:
		return true
	}
	return false
}

func errKeyReused() error {
	return flashorder.Errorf(flashorder.EKEYREUSED, "this Idempotency-Key was used for another request")
}
