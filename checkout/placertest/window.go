package placertest

import (
	"errors"
	"time"

	"github.com/flashorder/flashorder"
)

// testSaleWindow checks the sale window with the placers' clock moved by
// hand: 1 ms before starts_at an order is refused not_started (naming the
// start) and changes nothing; at starts_at it is accepted; 1 µs before
// ends_at too; at ends_at it is refused sale_ended. A cart with one product
// not yet open is refused whole, however its items are ordered. A window
// moved during the sale (a PUT, as an admin would) applies to the next
// order: an end moved earlier ends the sale, a start moved later closes it
// again, and moving them back opens it. The precedence: unknown_product
// before the window, the window before limit_exceeded and sold_out.
func testSaleWindow(e *env) {
	start := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	end := start.Add(10 * time.Minute)
	drop := e.windowProduct("drop", 5, 1, &start, &end)
	open := e.product("open", 5, 0)
	out := e.windowProduct("out", 0, 0, &start, nil)
	buyer, holder := e.user("buyer"), e.user("holder")

	e.clock.Set(start.Add(-time.Millisecond))
	before := e.snapshot([]string{buyer, holder})
	r := e.place(e.placer, request(buyer, "", item(drop, 1)))
	e.expectOne(r, flashorder.ENOTSTARTED)
	var ferr *flashorder.Error
	if errors.As(r.err, &ferr) && !ferr.StartsAt.Equal(start) {
		e.t.Errorf("not_started names the start %v, want %v", ferr.StartsAt, start)
	}
	e.expectOne(e.place(e.placer, request(buyer, "", item(open, 1), item(drop, 1))), flashorder.ENOTSTARTED)
	e.expectOne(e.place(e.placer, request(buyer, "", item(drop, 1), item(open, 1))), flashorder.ENOTSTARTED)
	e.expectOne(e.place(e.placer, request(buyer, "", item(drop, 1), item(e.unknown("x"), 1))), flashorder.EUNKNOWNPRODUCT)
	// Before the start the window wins over stock: out has none.
	e.expectOne(e.place(e.placer, request(buyer, "", item(out, 1))), flashorder.ENOTSTARTED)
	e.sameSnapshot("orders before the start", before, e.snapshot([]string{buyer, holder}))

	e.clock.Set(start)
	e.expectOne(e.place(e.placer, request(holder, "", item(drop, 1))), ok)
	e.expectOne(e.place(e.placer, request(holder, "", item(drop, 1))), flashorder.ELIMITEXCEEDED)
	e.expectOne(e.place(e.placer, request(buyer, "", item(out, 1))), flashorder.ESOLDOUT)
	e.expectOne(e.place(e.placer, request(buyer, "", item(open, 1), item(drop, 1))), ok)

	// The end moved earlier during the sale ends it; moved back, it opens.
	e.clock.Set(start.Add(2 * time.Minute))
	early := start.Add(time.Minute)
	e.windowProduct("drop", e.products[drop].Stock-2, 1, &start, &early)
	e.expectOne(e.place(e.placer, request(e.user("late"), "", item(drop, 1))), flashorder.ESALEENDED)
	// The start moved later closes it again.
	later := start.Add(time.Hour)
	e.windowProduct("drop", e.products[drop].Stock, 1, &later, nil)
	e.expectOne(e.place(e.placer, request(e.user("late"), "", item(drop, 1))), flashorder.ENOTSTARTED)
	e.windowProduct("drop", e.products[drop].Stock, 1, &start, &end)
	e.expectOne(e.place(e.placer, request(e.user("late"), "", item(drop, 1))), ok)

	e.clock.Set(end.Add(-time.Microsecond))
	e.expectOne(e.place(e.placer, request(e.user("last"), "", item(drop, 1))), ok)
	e.clock.Set(end)
	before = e.snapshot([]string{buyer, holder})
	e.expectOne(e.place(e.placer, request(e.user("after"), "", item(drop, 1))), flashorder.ESALEENDED)
	e.expectOne(e.place(e.placer, request(buyer, "", item(open, 1), item(drop, 1))), flashorder.ESALEENDED)
	// After the end the window wins over the limit: holder holds it.
	e.expectOne(e.place(e.placer, request(holder, "", item(drop, 1))), flashorder.ESALEENDED)
	e.sameSnapshot("orders after the end", before, e.snapshot([]string{buyer, holder}))
	for _, a := range e.accepted {
		for _, it := range a.order.Items {
			if it.SKU == drop && (a.order.CreatedAt.Before(start) || !a.order.CreatedAt.Before(end)) {
				e.t.Errorf("order %s of %s created at %v, outside the window [%v, %v)", a.order.ID, drop, a.order.CreatedAt, start, end)
			}
		}
	}
	e.verify()
}

// windowProduct puts (or replaces) a product of the subtest with a sale
// window and returns its SKU; stock is the available stock it sets.
func (e *env) windowProduct(name string, stock, limit int64, startsAt, endsAt *time.Time) string {
	e.t.Helper()
	sku := e.prefix + name
	price := int64(100)
	if old := e.products[sku]; old != nil {
		price = old.PriceCents
	}
	p, err := e.db.PutProduct(e.ctx, flashorder.Product{SKU: sku, Name: "product " + sku, PriceCents: price, Stock: stock,
		PerUserLimit: limit, StartsAt: startsAt, EndsAt: endsAt})
	if err != nil {
		e.t.Fatalf("put product %s: %v", sku, err)
	}
	e.products[sku] = p
	return sku
}
