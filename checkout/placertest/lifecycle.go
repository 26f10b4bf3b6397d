package placertest

import (
	"sync"
	"sync/atomic"
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
