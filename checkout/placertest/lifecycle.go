package placertest

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
)

// maxPaid bounds how many orders the lifecycle race pays, so that stock is
// left for the check after every unpaid order expired.
const maxPaid = 8

// testLifecycleRace places 120 orders (singles of a SKU with a per-user limit,
// carts of it and another SKU) while goroutines pay or cancel accepted orders
// and a sweeper with a clock an hour ahead expires every created order it
// finds. Each end must be refused only as invalid_state (someone ended the
// order first); the invariants hold while orders end, after all unpaid ones
// expired (all their stock and counters back), and after a last order.
func testLifecycleRace(e *env) {
	e.lifecycle = true
	r1 := e.product("r1", 40, 3)
	r2 := e.product("r2", 25, 0)
	lc := checkout.NewLifecycle(e.db)
	late := checkout.NewLifecycle(e.db)
	late.Now = func() time.Time { return time.Now().Add(time.Hour) }

	toEnd := make(chan *flashorder.Order, 200)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var paid atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.endOrders(lc, toEnd, &paid)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.expireUntil(late, stop)
	}()
	rs := concurrently(120, func(i int) result {
		user := e.user(i % 12)
		var r result
		if i%2 == 0 {
			r = e.place(e.placer, request(user, "", item(r1, 1)))
		} else {
			r = e.place(e.placer, request(user, "", rotate([]flashorder.ItemRequest{item(r2, 1), item(r1, 1)}, i/2)...))
		}
		if r.err == nil && i%3 != 0 {
			toEnd <- r.order
		}
		return r
	})
	close(toEnd)
	close(stop)
	wg.Wait()
	e.expect(rs, ok, flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED)
	if tally(rs)[ok] == 0 {
		e.t.Fatalf("no order accepted: %v", tally(rs))
	}
	e.verify()

	e.expireAll(late)
	stored := e.verify()
	for id, o := range stored {
		if o.Status == flashorder.StatusCreated {
			e.t.Errorf("order %s is still created after every due order expired", id)
		}
	}
	// Stock and counters came back: a new user gets the limit at once.
	e.expectOne(e.place(e.placer, request(e.user("fresh"), "", item(r1, 3))), ok)
	e.verify()

	// Every order the suite placed so far has ended, so the payment window
	// check, nested here, sees only its own orders fall due.
	e.t.Run("PaymentWindow", func(t *testing.T) {
		testPaymentWindow(newEnv(t, e.db, e.url, e.prefix+"pw-", e.newPlacer, e.opts))
	})
}

// testPaymentWindow checks the products' payment windows with the placers'
// and the lifecycle's clocks set by hand. Placed at t0, an order of a product
// with a 1m window gets expires_at t0+1m (stored as returned); one of a
// product without a window gets none; a cart gets the shortest window among
// its products that have one. At t0+59s and at t0+1m nothing of them is due
// (a payment at t0+1m still succeeds); 1µs later the 1m orders expire, a
// payment of one the sweep has not reached is refused invalid_state and
// expires it, and their stock and per-user quota come back. The 5m cart
// expires after t0+5m, the order without a window after the default
// timeout (15m), not before.
func testPaymentWindow(e *env) {
	e.lifecycle = true
	oneMin := e.paymentWindowProduct("w1m", 10, 2, time.Minute)
	fiveMin := e.paymentWindowProduct("w5m", 10, 0, 5*time.Minute)
	plain := e.product("plain", 10, 0)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	e.clock.Set(t0)
	var now testClock
	lc := checkout.NewLifecycle(e.db)
	lc.Now = now.Now

	placed := func(user string, items ...flashorder.ItemRequest) *flashorder.Order {
		e.t.Helper()
		r := e.place(e.placer, request(e.user(user), "", items...))
		e.expectOne(r, ok)
		if r.err != nil {
			e.t.FailNow()
		}
		return r.order
	}
	at := func(d time.Duration) *time.Time { t := t0.Add(d); return &t }
	short := placed("short", item(oneMin, 2))
	none := placed("none", item(plain, 1))
	cart := placed("cart", item(fiveMin, 1), item(oneMin, 1))
	mixed := placed("mixed", item(plain, 1), item(fiveMin, 1))
	payer := placed("payer", item(oneMin, 1))
	late := placed("late", item(oneMin, 1))
	want := map[string]*time.Time{short.ID: at(time.Minute), none.ID: nil, cart.ID: at(time.Minute),
		mixed.ID: at(5 * time.Minute), payer.ID: at(time.Minute), late.ID: at(time.Minute)}
	e.checkDeadlines(want)

	mine := func(orders []*flashorder.Order) []string {
		var ids []string
		for _, o := range orders {
			if _, ok := want[o.ID]; ok {
				ids = append(ids, o.ID)
			}
		}
		slices.Sort(ids)
		return ids
	}
	expireAt := func(d time.Duration, wantIDs ...string) {
		e.t.Helper()
		now.Set(t0.Add(d))
		var got []string
		for {
			expired, err := lc.ExpireDue(e.ctx, checkout.DefaultExpireBatch)
			if err != nil {
				e.t.Fatalf("expire at t0+%v: %v", d, err)
			}
			if len(expired) == 0 {
				break
			}
			got = append(got, mine(expired)...)
		}
		slices.Sort(got)
		slices.Sort(wantIDs)
		if !slices.Equal(got, wantIDs) {
			e.t.Errorf("at t0+%v the sweep expired %v, want %v", d, got, wantIDs)
		}
	}
	expireAt(59 * time.Second)
	expireAt(time.Minute)
	if o, err := lc.PayOrder(e.ctx, payer.ID); err != nil || o.Status != flashorder.StatusPaid {
		e.t.Errorf("payment at the deadline: %+v, %v", o, err)
	}
	now.Set(t0.Add(time.Minute + time.Microsecond))
	if _, err := lc.PayOrder(e.ctx, late.ID); flashorder.ErrorCode(err) != flashorder.EINVALIDSTATE {
		e.t.Errorf("payment 1µs after the deadline: %v, want invalid_state", err)
	}
	expireAt(time.Minute+time.Microsecond, short.ID, cart.ID)
	stored := e.verify()
	for id, st := range map[string]flashorder.Status{short.ID: flashorder.StatusExpired, cart.ID: flashorder.StatusExpired,
		late.ID: flashorder.StatusExpired, payer.ID: flashorder.StatusPaid, none.ID: flashorder.StatusCreated, mixed.ID: flashorder.StatusCreated} {
		if stored[id].Status != st {
			e.t.Errorf("order %s is %s at t0+1m1µs, want %s", id, stored[id].Status, st)
		}
	}
	// Stock and quota came back: the user of the expired order buys the
	// limit again, and the units left are exactly those of the paid order.
	e.clock.Set(t0.Add(2 * time.Minute))
	again := placed("short", item(oneMin, 2))
	want[again.ID] = at(3 * time.Minute)
	e.checkDeadlines(want)
	if p, err := e.db.Product(e.ctx, oneMin); err != nil || p.Stock != 10-1-2 {
		e.t.Errorf("product %s after the expiry and a new order: %+v, %v; want stock 7", oneMin, p, err)
	}

	expireAt(5*time.Minute, again.ID)
	expireAt(5*time.Minute+time.Microsecond, mixed.ID)
	expireAt(flashorder.DefaultPaymentTimeout)
	expireAt(flashorder.DefaultPaymentTimeout+time.Microsecond, none.ID)
	stored = e.verify()
	for id, o := range stored {
		if o.Status == flashorder.StatusCreated {
			e.t.Errorf("order %s is still created after every window closed", id)
		}
	}
}

// paymentWindowProduct puts a product of the subtest with a payment window
// and returns its SKU.
func (e *env) paymentWindowProduct(name string, stock, limit int64, window time.Duration) string {
	e.t.Helper()
	sku := e.prefix + name
	p, err := e.db.PutProduct(e.ctx, flashorder.Product{SKU: sku, Name: "product " + sku, PriceCents: 100 + 7*int64(len(e.products)),
		Stock: stock, PerUserLimit: limit, PaymentWindow: window})
	if err != nil {
		e.t.Fatalf("put product %s: %v", sku, err)
	}
	e.products[sku] = p
	return sku
}

// checkDeadlines checks the payment deadline of each order in want, as its
// placer returned it and as it is stored.
func (e *env) checkDeadlines(want map[string]*time.Time) {
	e.t.Helper()
	returned := map[string]*time.Time{}
	for _, a := range e.accepted {
		returned[a.order.ID] = a.order.ExpiresAt
	}
	for id, w := range want {
		s, err := e.db.Order(e.ctx, id)
		if err != nil {
			e.t.Fatalf("read order %s: %v", id, err)
		}
		if !sameTime(returned[id], w) || !sameTime(s.ExpiresAt, w) {
			e.t.Errorf("order %s: expires_at returned %v, stored %v; want %v", id, returned[id], s.ExpiresAt, w)
		}
	}
}

// sameTime reports whether a and b are both nil or the same instant.
func sameTime(a, b *time.Time) bool {
	return a == b || (a != nil && b != nil && a.Equal(*b))
}

// endOrders pays the first maxPaid orders it receives and cancels the others.
func (e *env) endOrders(lc *checkout.Lifecycle, orders <-chan *flashorder.Order, paid *atomic.Int64) {
	for o := range orders {
		pay := paid.Add(1) <= maxPaid
		var got *flashorder.Order
		var err error
		want := flashorder.StatusCancelled
		if pay {
			got, err = lc.PayOrder(e.ctx, o.ID)
			want = flashorder.StatusPaid
		} else {
			got, err = lc.CancelOrder(e.ctx, o.ID)
		}
		switch flashorder.ErrorCode(err) {
		case "":
			if got.ID != o.ID || got.Status != want {
				e.t.Errorf("ending order %s as %s returned %+v", o.ID, want, got)
			}
		case flashorder.EINVALIDSTATE:
			// The sweeper expired it first.
		default:
			e.t.Errorf("ending order %s as %s: %v", o.ID, want, err)
		}
	}
}

// expireUntil expires due orders in small batches until stop closes.
func (e *env) expireUntil(late *checkout.Lifecycle, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if _, err := late.ExpireDue(e.ctx, 7); err != nil {
			e.t.Errorf("expire due orders while orders are placed: %v", err)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// expireAll expires every due order.
func (e *env) expireAll(late *checkout.Lifecycle) {
	e.t.Helper()
	for {
		expired, err := late.ExpireDue(e.ctx, checkout.DefaultExpireBatch)
		if err != nil {
			e.t.Fatalf("expire due orders: %v", err)
		}
		if len(expired) == 0 {
			return
		}
	}
}
