package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashorder/flashorder"
)

// Defaults of RoomOptions.
const (
	// DefaultAdmitInterval is how often a room admits the next buyers of
	// each queue it serves.
	DefaultAdmitInterval = 100 * time.Millisecond
	// PollWaiting and PollFar are the poll intervals a waiting ticket is
	// told: PollWaiting within the first FarPosition places, PollFar
	// behind them; both short enough that a sell-out (seen by the next
	// admission round, DefaultAdmitInterval) reaches every waiting buyer
	// within a second.
	PollWaiting = 500 * time.Millisecond
	PollFar     = 750 * time.Millisecond
	FarPosition = 1000
	// PollSoldOut is the poll interval of a sold-out ticket: stock may
	// come back (a cancel, an expiry, a restock).
	PollSoldOut = time.Second
	// maxPreQueuePoll bounds the poll interval before the start, so that
	// a pre-queue ticket stays well inside the idle timeout.
	maxPreQueuePoll = 5 * time.Second
)

// AdmissionKeyPrefix starts the idempotency key of an order placed with an
// admission: the key is the prefix and the ticket id, so that the order
// store's unique key (and the idempotency store, for refusals) lets one
// admission make one order.
const AdmissionKeyPrefix = "admission:"

// Catalog reads products as the crowd's requests see them: the product
// cache (checkout.ProductCache), so that joins and order checks make no
// database round trip.
type Catalog interface {
	Product(ctx context.Context, sku string) (*flashorder.Product, error)
}

// StockSource reads a queue's products fresh, for the admission bound:
// gormdb.DB is one.
type StockSource interface {
	Product(ctx context.Context, sku string) (*flashorder.Product, error)
	SaleProducts(ctx context.Context, sale string) ([]*flashorder.Product, error)
}

// RoomOptions configure a Room; zero fields take their defaults.
type RoomOptions struct {
	// Interval is how often the room admits; DefaultAdmitInterval when 0.
	Interval time.Duration
	// Now is the clock; time.Now when nil.
	Now flashorder.Clock
	// Logger receives the admission loop's failures; slog.Default() when
	// nil.
	Logger *slog.Logger
	// Observe, when set, is told each queue's state after each admission
	// round (the metrics).
	Observe func(QueueState)
	// IdleTimeout is the store's (Options.IdleTimeout), for the polls
	// answered from memory; DefaultIdleTimeout when 0.
	IdleTimeout time.Duration
}

// QueueState is one queue's state after an admission round, as the room
// measured it.
type QueueState struct {
	Stats
	// QueueID is the queue.
	QueueID string
	// Admitted is the number of admissions this round made.
	Admitted int
	// MemoryPolls is the number of polls of the queue this instance
	// answered from memory since the last round (see prequeue.go).
	MemoryPolls int64
	// Stock is the stock left (the fresh read the round admitted against);
	// Sold the units in active orders; Bound the admissions' bound over
	// the whole sale, (Stock+Sold) x factor.
	Stock, Sold int64
	Bound       float64
	// Exceeded reports that units sold plus admissions outstanding have
	// stayed above Bound, with no admission used meanwhile, for longer
	// than an admission's use may lag its order's commit (an order in
	// between counts twice); reported once per such episode.
	Exceeded bool
}

// Place is a ticket as the API answers it: where it stands, what to do
// next, and the admission token once admitted.
type Place struct {
	Ticket
	// StartsAt is the queue's start, when it has one.
	StartsAt *time.Time
	// Token is the signed admission token of an admitted ticket whose
	// admission is neither used nor expired.
	Token string
	// PollAfter is when to poll again; 0 when there is no need.
	PollAfter time.Duration
	// EstimatedWait is the expected wait before admission; negative when
	// unknown.
	EstimatedWait time.Duration
}

// Room is the waiting room orderd serves over a Store: it joins buyers to
// the queue of a product sold through one (its own, or its sale's), answers
// polls with signed admission tokens, admits by stock in the background, and
// checks the admission of orders. Every instance on one Redis runs one: the
// store's scripts keep each step atomic across them.
type Room struct {
	store   Store
	signer  *Signer
	catalog Catalog
	stock   StockSource
	opts    RoomOptions

	active sync.Map // queue id -> *activeQueue
	pre    *preQueues

	stop context.CancelFunc
	done chan struct{}
	kick chan struct{}
}

// activeQueue is a queue this instance served recently, with what the
// admission loop needs to admit it.
type activeQueue struct {
	id, sku, sale string
	seen          atomic.Int64 // unix nanoseconds of the last join or poll here
	// pre is the pre-queue remembered here (see prequeue.go), and
	// memoryPolls the polls answered from it since the last round.
	pre         atomic.Pointer[preQueue]
	memoryPolls atomic.Int64
	// usedRate is the admissions used per second, smoothed, for the wait
	// estimates (math.Float64bits).
	usedRate atomic.Uint64
	lastUsed int
	lastAt   time.Time
	// overSince is when the rounds began to see units sold plus
	// admissions outstanding above the bound, with overUsed admissions
	// used (zero: not over); overCounted that the episode was counted.
	overSince   time.Time
	overUsed    int
	overCounted bool
}

// NewRoom returns a room; Start starts its admission loop.
func NewRoom(store Store, signer *Signer, catalog Catalog, stock StockSource, opts RoomOptions) *Room {
	if opts.Interval <= 0 {
		opts.Interval = DefaultAdmitInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	return &Room{store: store, signer: signer, catalog: catalog, stock: stock, opts: opts, pre: newPreQueues(opts.IdleTimeout)}
}

// QueueOf returns the queue id of a product sold through a waiting room:
// its sale's, or its own.
func QueueOf(p *flashorder.Product) string {
	if p.Sale != "" {
		return SaleQueue(p.Sale)
	}
	return ProductQueue(p.SKU)
}

// Join gives userID a place in the queue of the product sku, or returns the
// place the user has. It fails with ENOTFOUND (no such product),
// EINVALIDSTATE (the product takes orders without a queue), ESALEENDED and
// EUNAVAILABLE (the store did not answer).
func (r *Room) Join(ctx context.Context, sku, userID string) (Place, error) {
	p, err := r.catalog.Product(ctx, sku)
	if err != nil {
		return Place{}, err
	}
	if !p.Queued() {
		return Place{}, flashorder.Errorf(flashorder.EINVALIDSTATE,
			"product %q takes orders without a waiting room: order it directly", sku)
	}
	now := r.opts.Now()
	if p.WindowAt(now) == flashorder.WindowAfter {
		return Place{}, flashorder.Errorf(flashorder.ESALEENDED, "the sale of %q has ended", sku)
	}
	qid := QueueOf(p)
	var start time.Time
	if p.StartsAt != nil {
		start = *p.StartsAt
	}
	t, err := r.store.Join(ctx, qid, userID, start, now)
	if err != nil {
		return Place{}, storeError(err)
	}
	aq := r.activate(qid, p)
	r.pre.remember(aq, t, now)
	return r.place(aq, t, p.StartsAt, now)
}

// Poll returns where ticketID stands, with an admission token once it is
// admitted. It fails with ENOTFOUND (not a ticket of this room) and
// EUNAVAILABLE. A pre-queue ticket seen here is answered from memory until
// shortly before the start (see prequeue.go).
func (r *Room) Poll(ctx context.Context, ticketID string) (Place, error) {
	now := r.opts.Now()
	if qid, err := ParseTicketID(ticketID); err == nil {
		if v, ok := r.active.Load(qid); ok {
			aq := v.(*activeQueue)
			if t, start, ok := r.pre.poll(aq, ticketID, now); ok {
				aq.seen.Store(now.UnixNano())
				aq.memoryPolls.Add(1)
				return r.place(aq, t, &start, now)
			}
			if tc, ok := r.pre.unsent(aq, ticketID); ok {
				if _, err := r.store.Touch(ctx, qid, []Touch{tc}, now); err != nil {
					return Place{}, storeError(err)
				}
			}
		}
	}
	t, err := r.store.Poll(ctx, ticketID, now)
	if err != nil {
		return Place{}, storeError(err)
	}
	aq, _ := r.active.Load(t.QueueID)
	if aq == nil && t.Status == StatusWaiting && t.PreQueue {
		// A pre-queue polled here, joined elsewhere (or before a restart):
		// this instance serves it too, so that its rounds vouch for the
		// memory answers of its polls.
		aq = r.activate(t.QueueID, queueProduct(t.QueueID))
	}
	var starts *time.Time
	if t.PreQueue {
		starts = r.startOf(ctx, aq)
	}
	var q *activeQueue
	if aq != nil {
		q = aq.(*activeQueue)
		q.seen.Store(now.UnixNano())
		r.pre.remember(q, t, now)
	}
	return r.place(q, t, starts, now)
}

// queueProduct returns what activate needs of the products of queue qid,
// known only by its id: the SKU of a product's own queue, the sale id of a
// sale's.
func queueProduct(qid string) *flashorder.Product {
	if sku, ok := strings.CutPrefix(qid, productQueuePrefix); ok {
		return &flashorder.Product{SKU: sku}
	}
	return &flashorder.Product{Sale: strings.TrimPrefix(qid, saleQueuePrefix)}
}

// startOf returns the start of an active queue's product, from the catalog,
// or, for a sale's queue activated by a poll (no SKU known), as the last
// admission round read it.
func (r *Room) startOf(ctx context.Context, aq any) *time.Time {
	if aq == nil {
		return nil
	}
	q := aq.(*activeQueue)
	if q.sku == "" {
		if ns := q.pre.Load().start.Load(); ns != 0 {
			s := time.Unix(0, ns).UTC()
			return &s
		}
		return nil
	}
	if p, err := r.catalog.Product(ctx, q.sku); err == nil {
		return p.StartsAt
	}
	return nil
}

// place makes the answer of t at now.
func (r *Room) place(q *activeQueue, t Ticket, starts *time.Time, now time.Time) (Place, error) {
	pl := Place{Ticket: t, StartsAt: starts, EstimatedWait: -1}
	switch t.Status {
	case StatusAdmitted:
		if a := t.Admission; a != nil && !a.Used && now.Before(a.ExpiresAt) {
			tok, err := r.signer.Sign(*a)
			if err != nil {
				return Place{}, err
			}
			pl.Token = tok
		}
	case StatusSoldOut:
		pl.PollAfter = PollSoldOut
	case StatusWaiting:
		switch {
		case t.PreQueue && starts != nil && starts.After(now):
			until := starts.Sub(now)
			pl.EstimatedWait = until
			pl.PollAfter = min(max(until, PollWaiting), maxPreQueuePoll)
		case t.Position > FarPosition:
			pl.PollAfter = PollFar
		default:
			pl.PollAfter = PollWaiting
		}
		if q != nil && !t.PreQueue {
			if rate := fromBits(q.usedRate.Load()); rate > 0 {
				pl.EstimatedWait = time.Duration(float64(t.Position) / rate * float64(time.Second))
			}
		}
	}
	return pl, nil
}

// activate records that queue qid (of product p) is served here, for the
// admission loop.
func (r *Room) activate(qid string, p *flashorder.Product) *activeQueue {
	now := r.opts.Now().UnixNano()
	if v, ok := r.active.Load(qid); ok {
		aq := v.(*activeQueue)
		aq.seen.Store(now)
		return aq
	}
	aq := &activeQueue{id: qid, sku: p.SKU, sale: p.Sale}
	aq.seen.Store(now)
	aq.pre.Store(new(preQueue))
	v, _ := r.active.LoadOrStore(qid, aq)
	return v.(*activeQueue)
}

// storeError turns a store's error into the API's.
func storeError(err error) error {
	switch {
	case errors.Is(err, ErrMalformedTicket), errors.Is(err, ErrUnknownTicket):
		return flashorder.Errorf(flashorder.ENOTFOUND, "no such ticket")
	case errors.Is(err, ErrInvalid):
		return flashorder.Errorf(flashorder.EINVALID, "%s", err.Error())
	case errors.Is(err, ErrEnded):
		return flashorder.Errorf(flashorder.ESALEENDED, "the waiting room has closed: the sale ended")
	}
	var fe *flashorder.Error
	if errors.As(err, &fe) {
		return err
	}
	return &flashorder.Error{Code: flashorder.EUNAVAILABLE, Message: "the waiting room is unavailable; retry shortly", Err: err}
}

// CheckOrder checks the admission of req, an order request carrying token
// (the Admission-Token header, "" when absent) and clientKey (its
// Idempotency-Key, "" when absent). An order without a product sold through
// a waiting room needs none: nil, nil. Otherwise the token must be a genuine
// unexpired admission of req's user to the one queue of those products, and
// the request is made idempotent by its admission: its key becomes the
// admission's, and its fingerprint includes clientKey (a fresh random value
// without one), so that a retry with the same Idempotency-Key replays the
// order and any other use of the token is refused as admission_used (see
// Done). It makes no round trip when the catalog has the products.
func (r *Room) CheckOrder(ctx context.Context, req *flashorder.PlaceOrderRequest, token, clientKey string) (*Admission, error) {
	var qid, sku string
	for _, it := range req.Items {
		p, err := r.catalog.Product(ctx, it.SKU)
		if flashorder.ErrorCode(err) == flashorder.ENOTFOUND {
			continue // the strategy answers unknown_product
		}
		if err != nil {
			return nil, err
		}
		if !p.Queued() {
			continue
		}
		switch q := QueueOf(p); {
		case qid == "":
			qid, sku = q, p.SKU
		case q != qid:
			return nil, flashorder.Errorf(flashorder.EADMISSIONREQUIRED,
				"products %q and %q are sold through two waiting rooms: order them apart, each with its admission token", sku, p.SKU)
		}
	}
	if qid == "" {
		return nil, nil
	}
	if token == "" {
		return nil, flashorder.Errorf(flashorder.EADMISSIONREQUIRED,
			"product %q is sold through a waiting room: join it (POST /api/v1/products/%s/queue) and send the admission token in the Admission-Token header", sku, sku)
	}
	a, err := r.signer.Verify(token, req.UserID, qid, r.opts.Now())
	switch {
	case errors.Is(err, ErrTokenExpired):
		return nil, flashorder.Errorf(flashorder.EADMISSIONREQUIRED, "the admission token has expired: join the waiting room again")
	case errors.Is(err, ErrTokenMismatch):
		return nil, flashorder.Errorf(flashorder.EADMISSIONREQUIRED, "the admission token is another user's or another waiting room's")
	case err != nil:
		return nil, flashorder.Errorf(flashorder.EADMISSIONREQUIRED, "the admission token is not valid")
	}
	req.IdempotencyKey = AdmissionKeyPrefix + a.TicketID
	req.Fingerprint = admissionFingerprint(req.OrderRequest.Fingerprint(), clientKey)
	return &a, nil
}

// admissionFingerprint folds the client's Idempotency-Key into an
// admission order's fingerprint; without a key, a random value, so that no
// other request matches it.
func admissionFingerprint(fingerprint, clientKey string) string {
	h := sha256.New()
	h.Write([]byte(fingerprint))
	h.Write([]byte{0})
	if clientKey != "" {
		h.Write([]byte{1})
		h.Write([]byte(clientKey))
	} else {
		var nonce [16]byte
		_, _ = rand.Read(nonce[:])
		h.Write(nonce[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Done ends an order's admission once the order is answered, and returns
// the error to answer with. An order made, or refused for good (sold out,
// over a limit), uses the admission: it stops counting against the bound,
// and its place goes to the next buyer. An idempotency conflict on the
// admission's key is a second use: admission_used. A failure (the database
// unavailable) leaves the admission to a retry.
func (r *Room) Done(ctx context.Context, a *Admission, replayed bool, err error) error {
	if a == nil {
		return err
	}
	if flashorder.ErrorCode(err) == flashorder.EKEYREUSED {
		return flashorder.Errorf(flashorder.EADMISSIONUSED, "this admission token was used for another order")
	}
	if replayed {
		return err
	}
	switch flashorder.ErrorCode(err) {
	case "", flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED, flashorder.EUNKNOWNPRODUCT, flashorder.ENOTSTARTED, flashorder.ESALEENDED:
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if _, uerr := r.store.Use(ctx, a.TicketID, r.opts.Now()); uerr != nil &&
			!errors.Is(uerr, ErrAdmissionUsed) && !errors.Is(uerr, ErrAdmissionExpired) {
			r.opts.Logger.Warn("waiting room: mark an admission used", "ticket", a.TicketID, "err", uerr)
		}
		if flashorder.ErrorCode(err) == flashorder.ESOLDOUT {
			r.Kick()
		}
	}
	return err
}
