package placertest

import "github.com/flashorder/flashorder"

// testIdempotentTwins sends 20 keys, each as 6 concurrent twins (same key,
// same content; single items and carts) through one placer, with stock for
// all: exactly one twin per key gets an order, the other five
// ErrIdempotencyKeyTaken (the HTTP layer replays the stored order to them).
func testIdempotentTwins(e *env) {
	a := e.product("a", 1000, 0)
	b := e.product("b", 1000, 0)
	const keys, twins = 20, 6
	reqs := make([]*flashorder.PlaceOrderRequest, keys)
	for k := range keys {
		items := []flashorder.ItemRequest{item(a, int64(1+k%3))}
		if k >= 12 {
			items = []flashorder.ItemRequest{item(a, 1), item(b, 2)}
			if k%2 == 0 {
				items = reverse(items)
			}
		}
		reqs[k] = request(e.user(k), e.key(k), items...)
	}
	rs := concurrently(keys*twins, func(i int) result {
		req := *reqs[i%keys]
		return e.place(e.placer, &req)
	})
	e.expect(rs, ok, keyTaken)
	perKey := make([]map[string]int, keys)
	for i, r := range rs {
		if perKey[i%keys] == nil {
			perKey[i%keys] = map[string]int{}
		}
		perKey[i%keys][r.outcome()]++
	}
	for k, n := range perKey {
		if n[ok] != 1 || n[keyTaken] != twins-1 {
			e.t.Errorf("key %d, %d concurrent twins: %v, want 1 accepted and %d key_taken", k, twins, n, twins-1)
		}
	}
	e.verify()
}

// testRefusedTwins sends concurrent twins of requests that can only be
// refused (over a per-user limit, sold out, an unknown SKU): every twin gets
// the refusal, none ErrIdempotencyKeyTaken, since no order holds the key
// (the HTTP layer would find none to replay and answer 503), and the keys
// stay free for a valid request.
func testRefusedTwins(e *env) {
	lim := e.product("lim", 100, 2)
	out := e.product("out", 0, 0)
	fine := e.product("fine", 100, 0)
	cases := []struct {
		items []flashorder.ItemRequest
		want  string
	}{
		{[]flashorder.ItemRequest{item(lim, 3)}, flashorder.ELIMITEXCEEDED},
		{[]flashorder.ItemRequest{item(fine, 1), item(lim, 3)}, flashorder.ELIMITEXCEEDED},
		{[]flashorder.ItemRequest{item(out, 1)}, flashorder.ESOLDOUT},
		{[]flashorder.ItemRequest{item(out, 1), item(fine, 1)}, flashorder.ESOLDOUT},
		{[]flashorder.ItemRequest{item(e.unknown("t"), 1)}, flashorder.EUNKNOWNPRODUCT},
	}
	const twins = 6
	rs := concurrently(len(cases)*twins, func(i int) result {
		c := i % len(cases)
		return e.place(e.placer, request(e.user(c), e.key(c), cases[c].items...))
	})
	for i, r := range rs {
		e.expectOne(r, cases[i%len(cases)].want)
	}
	for c := range cases {
		e.keyFree(e.key(c))
		e.expectOne(e.place(e.placer, request(e.user(c), e.key(c), item(fine, 1))), ok)
	}
	e.verify()
}

// testKeyStoredElsewhere stores orders under keys through a second instance
// (a second store on the database and a second placer), then sends the same
// keys through the first: with the same content or other content, alone or
// concurrently through both instances, every answer is
// ErrIdempotencyKeyTaken and nothing is taken. When the product has sold out
// or the user holds its limit meanwhile, the placer may answer sold_out or
// limit_exceeded instead (the HTTP layer looks the key up in the database on
// those refusals too), but still takes nothing.
func testKeyStoredElsewhere(e *env) {
	second, _ := e.secondPlacer()
	s1 := e.product("s1", 20, 0)
	s2 := e.product("s2", 20, 0)
	last := e.product("last", 2, 0)
	lim := e.product("lim", 10, 1)
	users := []string{e.user("a"), e.user("b"), e.user("c"), e.user("d"), e.user("f")}
	first := []*flashorder.PlaceOrderRequest{
		request(users[0], e.key(1), item(s1, 1)),
		request(users[1], e.key(2), item(s2, 1), item(s1, 2)),
	}
	for _, req := range first {
		e.expectOne(e.place(second, req), ok)
	}
	before := e.snapshot(users)
	for _, req := range first {
		again := *req
		e.expectOne(e.place(e.placer, &again), keyTaken)
	}
	e.expectOne(e.place(e.placer, request(users[2], e.key(1), item(s2, 1))), keyTaken)
	e.expectOne(e.place(e.placer, request(users[2], e.key(2), item(s1, 1), item(s2, 1))), keyTaken)
	rs := concurrently(20, func(i int) result {
		again := *first[i%2]
		if i%4 < 2 {
			return e.place(second, &again)
		}
		return e.place(e.placer, &again)
	})
	e.expect(rs, keyTaken)
	e.sameSnapshot("orders under keys stored by another instance", before, e.snapshot(users))

	e.expectOne(e.place(second, request(users[3], e.key(3), item(last, 2))), ok)
	e.expectOne(e.place(second, request(users[4], e.key(4), item(lim, 1))), ok)
	before = e.snapshot(users)
	for _, c := range []struct {
		req     *flashorder.PlaceOrderRequest
		refusal string
	}{
		{request(users[3], e.key(3), item(last, 2)), flashorder.ESOLDOUT},
		{request(users[4], e.key(4), item(lim, 1)), flashorder.ELIMITEXCEEDED},
	} {
		r := e.place(e.placer, c.req)
		e.expectOne(r, keyTaken, c.refusal)
		e.t.Logf("replay of a key stored by another instance, %s meanwhile: %s", c.refusal, r.outcome())
	}
	e.sameSnapshot("orders under keys stored by another instance", before, e.snapshot(users))
	e.verify()
}
