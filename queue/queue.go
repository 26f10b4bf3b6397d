// Package queue is the waiting room's vocabulary: tickets, their states, the
// admissions that let a buyer order a product sold through a queue, and the
// Store interface that the in-process (inmem) and Redis (redis) stores
// implement and the queuetest suite checks.
//
// A queue belongs to one product (ProductQueue of its SKU) or one sale
// (SaleQueue of a sale id shared by several products). Before the queue's start every joiner is in the
// pre-queue, in an order fixed by a key drawn from crypto/rand at the join,
// which makes the pre-queue a uniform shuffle whatever the arrival times;
// later arrivals go behind it in arrival order. Admission is bounded by stock:
// outstanding admissions never exceed the stock left times a factor, so with
// a factor of at least 1, units sold plus admissions outstanding never exceed
// stock times the factor. Every operation takes the time from the caller's
// clock, so that tests and every instance decide alike.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/flashorder/flashorder"
)

// Defaults of Options.
const (
	// DefaultIdleTimeout is how long a waiting ticket keeps its place
	// without being polled.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultAdmissionTTL is how long an admission stays good unused.
	DefaultAdmissionTTL = 2 * time.Minute
)

// Errors of the stores and of the admission tokens.
var (
	// ErrInvalid is a queue id or user id that is not one.
	ErrInvalid = errors.New("queue: invalid queue or user id")
	// ErrMalformedTicket is a ticket id that no store could have made.
	ErrMalformedTicket = errors.New("queue: malformed ticket id")
	// ErrUnknownTicket is a well-formed ticket id that the store does not
	// know.
	ErrUnknownTicket = errors.New("queue: unknown ticket")
	// ErrEnded refuses a join to a queue that has ended.
	ErrEnded = errors.New("queue: the queue has ended")
	// ErrNotAdmitted refuses using a ticket that holds no admission.
	ErrNotAdmitted = errors.New("queue: ticket not admitted")
	// ErrAdmissionUsed refuses a second use of an admission.
	ErrAdmissionUsed = errors.New("queue: admission already used")
	// ErrAdmissionExpired refuses an admission whose time ran out.
	ErrAdmissionExpired = errors.New("queue: admission expired")
	// ErrStale refuses an Admit whose stock read is older than the last
	// use of an admission.
	ErrStale = errors.New("queue: admissions were used since the stock was read")
)

// Status is where a ticket stands.
type Status string

// The statuses of a ticket.
const (
	// StatusWaiting is a ticket in the line (or the pre-queue).
	StatusWaiting Status = "waiting"
	// StatusAdmitted is a ticket holding an admission, used or not.
	StatusAdmitted Status = "admitted"
	// StatusSoldOut is a waiting ticket of a queue marked sold out; it keeps
	// its place while polled and waits again when admission resumes.
	StatusSoldOut Status = "sold_out"
	// StatusEnded is a waiting ticket of a queue that has ended.
	StatusEnded Status = "ended"
	// StatusExpired is a ticket that left the queue: not polled for the idle
	// timeout, or admitted and not used within the admission TTL.
	StatusExpired Status = "expired"
)

// Options are the stores' timings.
type Options struct {
	// IdleTimeout is how long a waiting ticket keeps its place without a
	// poll or join; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// AdmissionTTL is how long an admission stays good unused; 0 means
	// DefaultAdmissionTTL.
	AdmissionTTL time.Duration
}

// WithDefaults returns o with its zero fields set to the defaults.
func (o Options) WithDefaults() Options {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.AdmissionTTL <= 0 {
		o.AdmissionTTL = DefaultAdmissionTTL
	}
	return o
}

// Ticket is one user's place in one queue, as it stands at the time asked.
type Ticket struct {
	// ID names the ticket; it carries the queue id (see NewTicketID).
	ID string
	// QueueID is the queue's id: a SKU or a sale id.
	QueueID string
	// UserID is the ticket's holder.
	UserID string
	// Status is where the ticket stands.
	Status Status
	// Position is the 1-based place among the waiting tickets after the
	// start; 0 when not waiting or in the pre-queue, whose order nobody
	// learns before the start.
	Position int
	// PreQueue reports a waiting ticket before the queue's start.
	PreQueue bool
	// Admission is set when Status is StatusAdmitted.
	Admission *Admission
}

// Admission is a ticket's right to order once, until ExpiresAt.
type Admission struct {
	// TicketID is the admitted ticket.
	TicketID string
	// QueueID is the ticket's queue: a SKU or a sale id.
	QueueID string
	// UserID is the ticket's holder, the only user it admits.
	UserID string
	// ExpiresAt is when the admission lapses unused.
	ExpiresAt time.Time
	// Used reports that the admission was consumed.
	Used bool
	// Number is the admission's place in its queue's admission order: 1
	// for the first admission the queue made, counting every instance's.
	// The admissions of one round share their moment but not their number,
	// so it shows the order in which the line was admitted.
	Number int64
}

// Touch is a poll a room answered from memory: its ticket, and when.
type Touch struct {
	TicketID string
	At       time.Time
}

// Stats are a queue's counters.
type Stats struct {
	// Waiting counts the tickets in the line and the pre-queue.
	Waiting int
	// Outstanding counts the admissions neither used nor expired.
	Outstanding int
	// Used counts the admissions consumed.
	Used int
	// SoldOut reports the queue marked sold out.
	SoldOut bool
	// Ended reports the queue ended.
	Ended bool
}

// Store keeps queues. Every method takes now from the caller's clock; expired
// tickets and admissions are dealt with as a store meets them, so no
// background work is needed. Implementations are safe for concurrent use, and
// every operation on one queue is atomic.
type Store interface {
	// Join gives userID a place in queueID, whose start is startsAt, or
	// returns the place the user already has. A user whose ticket expired
	// gets a new place at the back. It fails with ErrInvalid and ErrEnded.
	Join(ctx context.Context, queueID, userID string, startsAt, now time.Time) (Ticket, error)
	// Poll returns the ticket's state and keeps a waiting ticket's place
	// alive. It fails with ErrMalformedTicket and ErrUnknownTicket.
	Poll(ctx context.Context, ticketID string, now time.Time) (Ticket, error)
	// Touch keeps the waiting tickets among touches, all of queueID, in
	// their places as a Poll of each at its At would have, and returns
	// the ids of those that are not waiting (any more) at now: admitted,
	// left, unknown. A room calls it for the polls it answered from
	// memory.
	Touch(ctx context.Context, queueID string, touches []Touch, now time.Time) ([]string, error)
	// Admit admits the next waiting tickets, in order, while the admissions
	// outstanding stay within AdmitLimit(stockLeft, factor), and returns the
	// admissions made. It admits nobody before the start or after the end.
	// A stockLeft above 0 lifts a sold-out mark. usedSeen, when not
	// negative, is Stats.Used as the caller saw it before it read
	// stockLeft: when an admission was used since (its order took stock
	// that stockLeft may still count), Admit fails with ErrStale and
	// changes nothing.
	Admit(ctx context.Context, queueID string, stockLeft int, factor float64, usedSeen int, now time.Time) ([]Admission, error)
	// Use consumes the ticket's admission once. It fails with
	// ErrMalformedTicket, ErrUnknownTicket, ErrNotAdmitted,
	// ErrAdmissionUsed and ErrAdmissionExpired, changing nothing.
	Use(ctx context.Context, ticketID string, now time.Time) (Admission, error)
	// SoldOut marks the queue sold out: every waiting ticket reads
	// StatusSoldOut at once, until Admit sees stock again.
	SoldOut(ctx context.Context, queueID string, now time.Time) error
	// End ends the queue: waiting tickets read StatusEnded, joins fail.
	End(ctx context.Context, queueID string, now time.Time) error
	// Stats returns the queue's counters.
	Stats(ctx context.Context, queueID string, now time.Time) (Stats, error)
}

// AdmitLimit is how many admissions may be outstanding with stockLeft units
// left: stockLeft x factor, rounded down, never below 0.
func AdmitLimit(stockLeft int, factor float64) int {
	if stockLeft <= 0 || !(factor > 0) {
		return 0
	}
	return int(math.Floor(float64(stockLeft) * factor))
}

// The kinds of queue id: a product's own queue and a sale's.
const (
	productQueuePrefix = "sku:"
	saleQueuePrefix    = "sale:"
)

// ProductQueue returns the queue id of a product without a sale: "sku:" and
// its SKU.
func ProductQueue(sku string) string { return productQueuePrefix + sku }

// SaleQueue returns the queue id of a sale: "sale:" and the sale id, which
// has a SKU's syntax. A product and a sale of one name are two queues, so
// that a token of one is never good for the other.
func SaleQueue(sale string) string { return saleQueuePrefix + sale }

// ValidateQueueID checks a queue id made by ProductQueue or SaleQueue.
func ValidateQueueID(queueID string) error {
	name, ok := strings.CutPrefix(queueID, productQueuePrefix)
	if !ok {
		name, ok = strings.CutPrefix(queueID, saleQueuePrefix)
	}
	if !ok || flashorder.ValidateSKU(name) != nil {
		return fmt.Errorf("%w: queue id %q", ErrInvalid, queueID)
	}
	return nil
}

// ValidateIDs checks a queue id and a user id.
func ValidateIDs(queueID, userID string) error {
	if err := ValidateQueueID(queueID); err != nil {
		return err
	}
	if flashorder.ValidateUserID(userID) != nil {
		return fmt.Errorf("%w: user id %q", ErrInvalid, userID)
	}
	return nil
}

// ticketSep separates the queue id from the random part of a ticket id; no
// queue id contains it, and URLs carry it unescaped.
const ticketSep = "~"

// ticketRandLen is the length of a ticket id's random part: 128 bits in hex.
const ticketRandLen = 32

// NewTicketID returns a new ticket id of queueID: the queue id, "~" and 128
// random bits in hex, so that a store finds the queue from the ticket alone.
func NewTicketID(queueID string) string {
	b := make([]byte, ticketRandLen/2)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return queueID + ticketSep + hex.EncodeToString(b)
}

// ParseTicketID returns the queue id of a ticket id, or ErrMalformedTicket.
func ParseTicketID(ticketID string) (string, error) {
	q, r, ok := strings.Cut(ticketID, ticketSep)
	if !ok || len(r) != ticketRandLen || ValidateQueueID(q) != nil {
		return "", ErrMalformedTicket
	}
	for _, c := range []byte(r) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", ErrMalformedTicket
		}
	}
	return q, nil
}

// PreQueueKey returns a uniform random key in [0, 1) from crypto/rand, with
// 53 random bits (exact in a float64 and in a Redis sorted set's score).
// Ordering the pre-queue by these keys is a uniform shuffle, ties aside
// (about one pair in 2^53).
func PreQueueKey() float64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53)
}
