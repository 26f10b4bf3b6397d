package placertest

import "github.com/flashorder/flashorder"

// testNoOversell sends 200 concurrent orders at two SKUs with less stock than
// demand: 100 orders of one unit at 50 units, where exactly 50 succeed, and
// 100 orders of two units at 51 units, where exactly 25 succeed and one unit
// stays (a refusal means fewer than two units were left, and stock only
// falls). Everyone else gets sold_out.
func testNoOversell(e *env) {
	one := e.product("one", 50, 0)
	two := e.product("two", 51, 0)
	rs := concurrently(200, func(i int) result {
		if i%2 == 0 {
			return e.place(e.placer, request(e.user(i%40), "", item(one, 1)))
		}
		return e.place(e.placer, request(e.user(i%40), "", item(two, 2)))
	})
	e.expect(rs, ok, flashorder.ESOLDOUT)
	for sku, want := range map[string]int{one: 50, two: 25} {
		var got, refused int
		for _, r := range rs {
			if r.req.Items[0].SKU != sku {
				continue
			}
			switch r.outcome() {
			case ok:
				got++
			case flashorder.ESOLDOUT:
				refused++
			}
		}
		if got != want || refused != 100-want {
			e.t.Errorf("%s: %d orders accepted and %d sold_out, want %d and %d", sku, got, refused, want, 100-want)
		}
	}
	e.verify()
}

// testSoldOutChangesNothing sends concurrent orders that can only be
// refused sold_out (single items and carts touching a SKU without stock,
// some with a per-user limit, some with keys): every answer is sold_out and
// no product, counter, order or key changes.
func testSoldOutChangesNothing(e *env) {
	empty := e.product("empty", 0, 0)
	emptyLimited := e.product("empty-limited", 0, 5)
	plenty := e.product("plenty", 10, 2)
	users := []string{e.user(0), e.user(1), e.user(2), e.user(3)}
	before := e.snapshot(users)
	carts := [][]flashorder.ItemRequest{
		{item(empty, 1)},
		{item(emptyLimited, 2)},
		{item(plenty, 1), item(empty, 1)},
		{item(emptyLimited, 1), item(plenty, 2)},
		{item(empty, 3), item(emptyLimited, 1), item(plenty, 1)},
	}
	rs := concurrently(100, func(i int) result {
		key := ""
		if i%3 == 0 {
			key = e.key(i)
		}
		return e.place(e.placer, request(users[i%len(users)], key, carts[i%len(carts)]...))
	})
	e.expect(rs, flashorder.ESOLDOUT)
	e.sameSnapshot("orders refused sold_out", before, e.snapshot(users))
	for i := 0; i < 100; i += 3 {
		e.keyFree(e.key(i))
	}
	if stored := e.verify(); len(stored) != 0 {
		e.t.Errorf("%d orders stored after only sold_out answers", len(stored))
	}
}
