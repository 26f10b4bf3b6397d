package placertest

import "github.com/flashorder/flashorder"

// testPerUserLimit runs three races at once. One user sends 40 one-unit
// orders of a SKU with limit 3: exactly 3 succeed, 37 get limit_exceeded.
// Another sends 20 two-unit orders of a SKU with limit 3: exactly one
// succeeds (2+2 > 3). Twenty users send three one-unit orders each of a SKU
// with limit 2 and 30 units: exactly 30 units sell (demand is 40, and a
// sold_out means none was left), and nobody gets more than 2. Afterwards a
// cart of the first user with the full SKU and another one is refused
// limit_exceeded and takes nothing, and another user still gets the first
// SKU's limit.
func testPerUserLimit(e *env) {
	three := e.product("three", 100, 3)
	pair := e.product("pair", 100, 3)
	scarce := e.product("scarce", 30, 2)
	other := e.product("other", 10, 0)
	solo, duo := e.user("solo"), e.user("duo")
	rs := concurrently(120, func(i int) result {
		switch {
		case i < 40:
			return e.place(e.placer, request(solo, "", item(three, 1)))
		case i < 60:
			return e.place(e.placer, request(duo, "", item(pair, 2)))
		}
		return e.place(e.placer, request(e.user(i%20), "", item(scarce, 1)))
	})
	bySKU := map[string][]result{}
	for _, r := range rs {
		bySKU[r.req.Items[0].SKU] = append(bySKU[r.req.Items[0].SKU], r)
	}
	e.expect(bySKU[three], ok, flashorder.ELIMITEXCEEDED)
	e.expect(bySKU[pair], ok, flashorder.ELIMITEXCEEDED)
	e.expect(bySKU[scarce], ok, flashorder.ELIMITEXCEEDED, flashorder.ESOLDOUT)
	if n := tally(bySKU[three]); n[ok] != 3 || n[flashorder.ELIMITEXCEEDED] != 37 {
		e.t.Errorf("one user, 40 orders of 1 at limit 3: %v, want 3 accepted and 37 limit_exceeded", n)
	}
	if n := tally(bySKU[pair]); n[ok] != 1 || n[flashorder.ELIMITEXCEEDED] != 19 {
		e.t.Errorf("one user, 20 orders of 2 at limit 3: %v, want 1 accepted and 19 limit_exceeded", n)
	}
	if n := tally(bySKU[scarce]); n[ok] != 30 || n[flashorder.ESOLDOUT] == 0 {
		e.t.Errorf("20 users, 3 orders of 1 each, limit 2, 30 units: %v, want 30 accepted and some sold_out", n)
	}
	before := e.snapshot([]string{solo})
	e.expectOne(e.place(e.placer, request(solo, "", item(other, 1), item(three, 1))), flashorder.ELIMITEXCEEDED)
	e.expectOne(e.place(e.placer, request(solo, "", item(three, 1), item(other, 1))), flashorder.ELIMITEXCEEDED)
	e.sameSnapshot("a cart over the limit", before, e.snapshot([]string{solo}))
	for range 3 {
		e.expectOne(e.place(e.placer, request(e.user("late"), "", item(three, 1))), ok)
	}
	e.verify()
}

// testPrecedence checks the order of refusals from DESIGN.md:
// unknown_product before limit_exceeded before sold_out, whatever the order of
// the items. A user holds the only unit of a SKU with limit 1, so the SKU is
// both sold out and over that user's limit; none of the refused orders takes
// anything.
func testPrecedence(e *env) {
	lim := e.product("lim", 1, 1)
	out := e.product("out", 0, 0)
	fine := e.product("fine", 10, 0)
	nope := e.unknown("p")
	holder, other := e.user("holder"), e.user("other")
	e.expectOne(e.place(e.placer, request(holder, "", item(lim, 1))), ok)
	before := e.snapshot([]string{holder, other})
	cases := []struct {
		user  string
		items []flashorder.ItemRequest
		want  string
	}{
		{holder, []flashorder.ItemRequest{item(lim, 1)}, flashorder.ELIMITEXCEEDED},
		{holder, []flashorder.ItemRequest{item(out, 1), item(lim, 1)}, flashorder.ELIMITEXCEEDED},
		{holder, []flashorder.ItemRequest{item(lim, 1), item(out, 1), item(fine, 1)}, flashorder.ELIMITEXCEEDED},
		{holder, []flashorder.ItemRequest{item(fine, 1), item(out, 1), item(lim, 1), item(nope, 1)}, flashorder.EUNKNOWNPRODUCT},
		{holder, []flashorder.ItemRequest{item(nope, 1), item(lim, 1)}, flashorder.EUNKNOWNPRODUCT},
		{other, []flashorder.ItemRequest{item(lim, 1)}, flashorder.ESOLDOUT},
		{other, []flashorder.ItemRequest{item(lim, 2)}, flashorder.ELIMITEXCEEDED},
		{other, []flashorder.ItemRequest{item(out, 1), item(lim, 2)}, flashorder.ELIMITEXCEEDED},
		{other, []flashorder.ItemRequest{item(fine, 1), item(out, 1)}, flashorder.ESOLDOUT},
		{other, []flashorder.ItemRequest{item(out, 1), item(nope, 1)}, flashorder.EUNKNOWNPRODUCT},
		{other, []flashorder.ItemRequest{item(fine, 11)}, flashorder.ESOLDOUT},
	}
	for i, c := range cases {
		r := e.place(e.placer, request(c.user, "", c.items...))
		if r.outcome() != c.want {
			e.t.Errorf("case %d: %s orders %v: got %s (%v), want %s", i, c.user, c.items, r.outcome(), r.err, c.want)
		}
	}
	// The same refusals, concurrently.
	rs := concurrently(len(cases)*4, func(i int) result {
		c := cases[i%len(cases)]
		return e.place(e.placer, request(c.user, "", c.items...))
	})
	for i, r := range rs {
		if want := cases[i%len(cases)].want; r.outcome() != want {
			e.t.Errorf("concurrent case %d: got %s (%v), want %s", i%len(cases), r.outcome(), r.err, want)
		}
	}
	e.sameSnapshot("refused orders", before, e.snapshot([]string{holder, other}))
	e.verify()
}
