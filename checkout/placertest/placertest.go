// Package placertest is the one conformance suite that every order-placing
// strategy (every flashorder.OrderPlacer of package checkout) runs on every
// database engine, the way package locktest serves the Lockers.
//
// Each subtest drives the placer concurrently, checks every answer it gets,
// and then checks the database's invariants (DESIGN.md): restocked = available
// + sold for every product, every accepted order stored with its items and
// nothing else stored, no idempotency key twice, per-user limits held and
// their counters equal to the units held in active orders.
//
// Answers that a correct strategy never gives in these tests (503
// unavailable, overloaded, internal errors: a deadlock that escaped the
// retries, a lost lock) fail the subtest with the full error.
package placertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// NewPlacer returns a new instance of the strategy under test on store. The
// suite calls it once per subtest, and a second time with a second store on
// the same database where it plays two orderd instances: placers made for
// one database must then coordinate the way instances of one deployment do
// (for the lock strategy: share one Locker, as they would share ZooKeeper).
//
// now is the clock the placer must stamp and judge orders by (the sale
// window subtest moves it); it reads the real time unless a subtest sets it.
type NewPlacer func(t *testing.T, store flashorder.Store, now flashorder.Clock) flashorder.OrderPlacer

// Options tunes Run.
type Options struct {
	// Databases are the databases to run on; nil means testenv.Databases:
	// SQLite, and PostgreSQL and MariaDB when the services script started
	// them (with FLASHORDER_REQUIRE_SERVICES=1 a missing one fails).
	Databases []testenv.Database
	// LeakOptions relax the check that every goroutine the suite and the
	// placers started is gone when Run ends.
	LeakOptions []goleak.Option
}

// subtestTimeout bounds one subtest on one database: a placer that hangs (a
// deadlock nobody breaks) fails instead of stalling the run.
const subtestTimeout = 2 * time.Minute

// check is one subtest of the suite.
type check struct {
	name string
	run  func(e *env)
}

// checks are the suite's subtests, in the order they run on each database.
var checks = []check{
	{"NoOversell", testNoOversell},
	{"SoldOutChangesNothing", testSoldOutChangesNothing},
	{"CartAllOrNothing", testCartAllOrNothing},
	{"CartLockOrder", testCartLockOrder},
	{"UnknownProduct", testUnknownProduct},
	{"PerUserLimit", testPerUserLimit},
	{"Precedence", testPrecedence},
	{"IdempotentTwins", testIdempotentTwins},
	{"RefusedTwins", testRefusedTwins},
	{"KeyStoredByAnotherInstance", testKeyStoredElsewhere},
	{"LifecycleRace", testLifecycleRace},
	{"TwoInstances", testTwoInstances},
	{"CatalogueMix", testCatalogueMix},
	{"SaleWindow", testSaleWindow},
}

// Run runs the suite against the strategy that newPlacer makes, on each
// database in parallel; the subtests of one database run one after another
// on one schema, each on products and users of its own.
func Run(t *testing.T, newPlacer NewPlacer, opts Options) {
	leak := append([]goleak.Option{goleak.IgnoreCurrent()}, opts.LeakOptions...)
	t.Cleanup(func() { goleak.VerifyNone(t, leak...) })
	dbs := opts.Databases
	if dbs == nil {
		dbs = testenv.Databases(t)
	}
	for _, d := range dbs {
		t.Run(d.Engine, func(t *testing.T) {
			t.Parallel()
			db := Open(t, d.URL)
			for i, c := range checks {
				t.Run(c.name, func(t *testing.T) {
					e := newEnv(t, db, d.URL, fmt.Sprintf("c%02d-", i), newPlacer, opts)
					c.run(e)
				})
			}
		})
	}
}

// Open opens the database at url as one more store (one more orderd
// instance's connection pool) and closes it when t ends.
func Open(t testing.TB, url string) *gormdb.DB {
	t.Helper()
	db, err := gormdb.Open(context.Background(), url, gormdb.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// env is one subtest on one database: its placer, the products and users it
// made, and every order the placers accepted.
type env struct {
	t         *testing.T
	ctx       context.Context
	db        *gormdb.DB
	url       string
	placer    flashorder.OrderPlacer
	newPlacer NewPlacer
	opts      Options
	// prefix starts every SKU, user id and key of the subtest.
	prefix string
	// products are the subtest's products as they were put, by SKU.
	products map[string]*flashorder.Product
	// lifecycle allows accepted orders to end (cancelled, expired).
	lifecycle bool
	// clock is the placers' clock.
	clock testClock

	mu       sync.Mutex
	users    map[string]bool
	accepted []accepted
	// takenKeys are the keys answered ErrIdempotencyKeyTaken.
	takenKeys map[string]bool
	// unexpected counts answers reported as unexpected, to cap the report.
	unexpected int
}

// accepted is an order a placer accepted, with the request that made it.
type accepted struct {
	req   *flashorder.PlaceOrderRequest
	order *flashorder.Order
}

func newEnv(t *testing.T, db *gormdb.DB, url, prefix string, newPlacer NewPlacer, opts Options) *env {
	ctx, cancel := context.WithTimeout(context.Background(), subtestTimeout)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, db: db, url: url, newPlacer: newPlacer, opts: opts, prefix: prefix,
		products: map[string]*flashorder.Product{}, users: map[string]bool{}, takenKeys: map[string]bool{}}
	e.placer = newPlacer(t, db, e.clock.Now)
	return e
}

// testClock is a clock that reads the real time until set.
type testClock struct{ at atomic.Pointer[time.Time] }

// Now returns the time set last, or the real time.
func (c *testClock) Now() time.Time {
	if t := c.at.Load(); t != nil {
		return *t
	}
	return time.Now()
}

// Set makes Now return t.
func (c *testClock) Set(t time.Time) { c.at.Store(&t) }

// product puts a product of the subtest and returns its SKU.
func (e *env) product(name string, stock, limit int64) string {
	e.t.Helper()
	sku := e.prefix + name
	price := 100 + 7*int64(len(e.products))
	p, err := e.db.PutProduct(e.ctx, flashorder.Product{SKU: sku, Name: "product " + sku, PriceCents: price, Stock: stock, PerUserLimit: limit})
	if err != nil {
		e.t.Fatalf("put product %s: %v", sku, err)
	}
	e.products[sku] = p
	return sku
}

// user returns the id of the subtest's user name.
func (e *env) user(name any) string { return fmt.Sprintf("%su-%v", e.prefix, name) }

// key returns the subtest's idempotency key name.
func (e *env) key(name any) string { return fmt.Sprintf("%sk-%v", e.prefix, name) }

// unknown returns a SKU that no product has.
func (e *env) unknown(name string) string { return e.prefix + "nope-" + name }

// secondPlacer opens the database again and returns a new placer on it: a
// second orderd instance.
func (e *env) secondPlacer() (flashorder.OrderPlacer, *gormdb.DB) {
	e.t.Helper()
	db := Open(e.t, e.url)
	return e.newPlacer(e.t, db, e.clock.Now), db
}

// item is one line of a request.
func item(sku string, qty int64) flashorder.ItemRequest {
	return flashorder.ItemRequest{SKU: sku, Quantity: qty}
}

// request returns a valid request; key may be empty.
func request(user, key string, items ...flashorder.ItemRequest) *flashorder.PlaceOrderRequest {
	req := &flashorder.PlaceOrderRequest{OrderRequest: flashorder.OrderRequest{UserID: user, Items: items}, IdempotencyKey: key}
	req.Fingerprint = req.OrderRequest.Fingerprint()
	return req
}

// result is one answer of a placer.
type result struct {
	req   *flashorder.PlaceOrderRequest
	order *flashorder.Order
	err   error
}

// Outcomes, as result.outcome names them; the others are error codes.
const (
	ok       = "ok"
	keyTaken = "key_taken"
)

// outcome names the answer: ok, key_taken, or the error's code.
func (r result) outcome() string {
	var ferr *flashorder.Error
	switch {
	case r.err == nil:
		return ok
	case errors.As(r.err, &ferr):
		return ferr.Code
	case errors.Is(r.err, flashorder.ErrIdempotencyKeyTaken):
		return keyTaken
	}
	return flashorder.EINTERNAL
}

// place sends req to p and records the answer.
func (e *env) place(p flashorder.OrderPlacer, req *flashorder.PlaceOrderRequest) result {
	if err := req.Validate(); err != nil {
		e.t.Errorf("the suite built an invalid request %+v: %v", req.OrderRequest, err)
	}
	o, err := p.PlaceOrder(e.ctx, req)
	r := result{req: req, order: o, err: err}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.users[req.UserID] = true
	if err == nil {
		e.checkReturned(req, o)
		e.accepted = append(e.accepted, accepted{req: req, order: o})
	}
	if r.outcome() == keyTaken {
		e.takenKeys[req.IdempotencyKey] = true
	}
	return r
}

// concurrently runs fn(0..n-1) in n goroutines released at once, and returns
// their results by index.
func concurrently(n int, fn func(i int) result) []result {
	out := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// tally counts results by outcome.
func tally(rs []result) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		m[r.outcome()]++
	}
	return m
}

// expect fails for every result whose outcome is not among allowed.
func (e *env) expect(rs []result, allowed ...string) {
	e.t.Helper()
	for _, r := range rs {
		if !isOneOf(r.outcome(), allowed) {
			e.unexpectedAnswer(r, allowed)
		}
	}
}

// expectOne fails unless r's outcome is among allowed.
func (e *env) expectOne(r result, allowed ...string) {
	e.t.Helper()
	if !isOneOf(r.outcome(), allowed) {
		e.unexpectedAnswer(r, allowed)
	}
}

func (e *env) unexpectedAnswer(r result, allowed []string) {
	e.t.Helper()
	e.mu.Lock()
	e.unexpected++
	n := e.unexpected
	e.mu.Unlock()
	switch {
	case n <= 10:
		e.t.Errorf("user %s key %q items %v: got %s (%v), want one of %v", r.req.UserID, r.req.IdempotencyKey, r.req.Items, r.outcome(), r.err, allowed)
	case n == 11:
		e.t.Errorf("more unexpected answers follow; not reported")
	}
}

func isOneOf(s string, set []string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}
