package placertest

import (
	"fmt"

	"github.com/flashorder/flashorder"
)

// rotate returns items rotated left by n, so that concurrent carts list the
// same SKUs in different orders.
func rotate(items []flashorder.ItemRequest, n int) []flashorder.ItemRequest {
	n %= len(items)
	out := append([]flashorder.ItemRequest{}, items[n:]...)
	return append(out, items[:n]...)
}

// reverse returns items in reverse order.
func reverse(items []flashorder.ItemRequest) []flashorder.ItemRequest {
	out := make([]flashorder.ItemRequest, len(items))
	for i, it := range items {
		out[len(items)-1-i] = it
	}
	return out
}

// testCartAllOrNothing sends 60 concurrent three-item carts, their items in
// every order, over two SKUs with plenty of stock and one with stock for 20,
// beside 30 single orders of a plentiful SKU. Exactly 20 carts succeed, 40
// get sold_out, and the refused carts took nothing from the plentiful SKUs
// (their sold units are exactly those of the accepted orders).
func testCartAllOrNothing(e *env) {
	x := e.product("x", 100, 0)
	y := e.product("y", 100, 0)
	z := e.product("z", 20, 0)
	cart := []flashorder.ItemRequest{item(x, 1), item(y, 2), item(z, 1)}
	rs := concurrently(90, func(i int) result {
		if i%3 == 2 {
			return e.place(e.placer, request(e.user(i), "", item(y, 1)))
		}
		items := rotate(cart, i)
		if i%2 == 1 {
			items = reverse(items)
		}
		return e.place(e.placer, request(e.user(i), "", items...))
	})
	var carts, singles map[string]int
	var cartRs, singleRs []result
	for _, r := range rs {
		if len(r.req.Items) == 1 {
			singleRs = append(singleRs, r)
		} else {
			cartRs = append(cartRs, r)
		}
	}
	carts, singles = tally(cartRs), tally(singleRs)
	e.expect(cartRs, ok, flashorder.ESOLDOUT)
	e.expect(singleRs, ok)
	if carts[ok] != 20 || carts[flashorder.ESOLDOUT] != 40 || singles[ok] != 30 {
		e.t.Errorf("carts: %v, singles: %v; want 20 carts accepted, 40 sold_out, 30 singles accepted", carts, singles)
	}
	e.verify()
}

// testCartLockOrder is deadlock bait: 90 concurrent carts of two to five
// SKUs out of five, listed in clashing orders (rotated, reversed), by a few
// users so that they share per-user counters, beside 30 single orders. Stock
// and limits are ample, so every order must succeed: a deadlock that escapes
// as an error fails the test.
func testCartLockOrder(e *env) {
	var skus []string
	for i := range 5 {
		limit := int64(0)
		if i%2 == 0 {
			limit = 100000
		}
		skus = append(skus, e.product(fmt.Sprintf("d%d", i), 10000, limit))
	}
	rs := concurrently(120, func(i int) result {
		user := e.user(i % 5)
		if i%4 == 3 {
			return e.place(e.placer, request(user, "", item(skus[i%5], int64(1+i%3))))
		}
		// A step coprime to 5 visits distinct SKUs in a scrambled order.
		n, start, step := 2+i%4, i%5, 1+(i/5)%4
		var items []flashorder.ItemRequest
		for j := range n {
			items = append(items, item(skus[(start+j*step)%5], int64(1+(i+j)%3)))
		}
		if i%2 == 0 {
			items = reverse(items)
		}
		return e.place(e.placer, request(user, "", items...))
	})
	e.expect(rs, ok)
	e.verify()
}

// testUnknownProduct sends concurrent orders naming a SKU that does not exist,
// alone or in a cart beside a product with stock and a limit, some under a
// key: all get unknown_product and nothing changes. The keys stay free: a
// later valid order under one of them succeeds.
func testUnknownProduct(e *env) {
	known := e.product("known", 10, 5)
	nope := e.unknown("a")
	carts := [][]flashorder.ItemRequest{
		{item(nope, 1)},
		{item(known, 1), item(nope, 1)},
		{item(nope, 2), item(known, 3)},
		{item(known, 1), item(e.unknown("b"), 1), item(nope, 1)},
	}
	users := []string{e.user(0), e.user(1), e.user(2)}
	e.refusedChangeNothing(flashorder.EUNKNOWNPRODUCT, 60, 2, users, carts)
	e.expectOne(e.place(e.placer, request(users[0], e.key(0), item(known, 2))), ok)
	e.verify()
}
