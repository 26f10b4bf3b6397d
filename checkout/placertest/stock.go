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
	carts := [][]flashorder.ItemRequest{
		{item(empty, 1)},
		{item(emptyLimited, 2)},
		{item(plenty, 1), item(empty, 1)},
		{item(emptyLimited, 1), item(plenty, 2)},
		{item(empty, 3), item(emptyLimited, 1), item(plenty, 1)},
	}
	e.refusedChangeNothing(flashorder.ESOLDOUT, 100, 3, users, carts)
}

// refusedChangeNothing places n orders at once, of users and carts in turn,
// every keyEvery-th under a key, that can only be refused with code: every
// answer is that refusal, no product, counter or order of users changed, and
// every key stays free.
func (e *env) refusedChangeNothing(code string, n, keyEvery int, users []string, carts [][]flashorder.ItemRequest) {
	e.t.Helper()
	before := e.snapshot(users)
	rs := concurrently(n, func(i int) result {
		key := ""
		if i%keyEvery == 0 {
			key = e.key(i)
		}
		return e.place(e.placer, request(users[i%len(users)], key, carts[i%len(carts)]...))
	})
	e.expect(rs, code)
	e.sameSnapshot("orders refused "+code, before, e.snapshot(users))
	for i := 0; i < n; i += keyEvery {
		e.keyFree(e.key(i))
	}
	if stored := e.verify(); len(stored) != 0 {
		e.t.Fatalf("%d orders stored after only %s answers", len(stored), code)
	}
}
