package placertest

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/flashorder/flashorder"
)

// workers runs n goroutines released at once, each placing perWorker orders
// one after another with fn(worker, j), and returns every result.
func workers(n, perWorker int, fn func(w, j int) result) []result {
	var mu sync.Mutex
	var out []result
	concurrently(n, func(w int) result {
		rs := make([]result, 0, perWorker)
		for j := range perWorker {
			rs = append(rs, fn(w, j))
		}
		mu.Lock()
		out = append(out, rs...)
		mu.Unlock()
		return result{}
	})
	return out
}

// testTwoInstances runs two instances on one database (two stores, two
// placers) at once: 80 single orders of a hot SKU with 40 units, split over
// both, of which exactly 40 succeed; 80 carts over three shared SKUs (one
// with a per-user limit) in clashing item orders; and 30 keys, each sent once
// through each instance. No answer may be a 503 (a deadlock or lock timeout
// that escaped), at most one twin per key gets an order, and the invariants
// hold.
func testTwoInstances(e *env) {
	second, _ := e.secondPlacer()
	placers := []flashorder.OrderPlacer{e.placer, second}
	hot := e.product("hot", 40, 0)
	h1 := e.product("h1", 60, 0)
	h2 := e.product("h2", 200, 0)
	h3 := e.product("h3", 40, 2)
	carts := [][]flashorder.ItemRequest{
		{item(h1, 1), item(h2, 1)},
		{item(h2, 2), item(h3, 1)},
		{item(h3, 1), item(h1, 1), item(h2, 1)},
		{item(h2, 1), item(h1, 2)},
		{item(h1, 1)},
		{item(h3, 1)},
	}
	rs := concurrently(220, func(i int) result {
		p := placers[i%2]
		switch {
		case i < 80:
			return e.place(p, request(e.user(i%30), "", item(hot, 1)))
		case i < 160:
			items := carts[i%len(carts)]
			if i%4 < 2 {
				items = reverse(items)
			}
			return e.place(p, request(e.user(i%30), "", items...))
		}
		k := (i - 160) / 2
		return e.place(p, request(e.user(k%30), e.key(k), carts[k%len(carts)]...))
	})
	e.expect(rs[:160], ok, flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED)
	e.expect(rs[160:], ok, keyTaken, flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED)
	if n := tally(rs[:80]); n[ok] != 40 || n[flashorder.ESOLDOUT] != 40 {
		e.t.Errorf("two instances, 80 orders of 1 at 40 units: %v, want 40 accepted and 40 sold_out", n)
	}
	e.t.Logf("carts %v, keyed twins %v", tally(rs[80:160]), tally(rs[160:]))
	e.verify()
}

// mixCatalogue is the catalogue of testCatalogueMix: stock and per-user
// limit of each SKU, from sold out to plentiful.
var mixCatalogue = []struct{ stock, limit int64 }{
	{0, 0}, {5, 0}, {20, 2}, {80, 5}, {300, 0}, {3, 1},
	{40, 3}, {150, 0}, {10, 2}, {60, 0}, {1, 0}, {500, 4},
}

// testCatalogueMix runs 16 workers of 15 random orders each over a catalogue
// of 12 SKUs (some sold out, some scarce, some with limits) and 30 users:
// carts of one to four items, 40 keys that each always carry the same
// request, and carts with an unknown SKU. A cart with an unknown SKU must get
// unknown_product, one over a product's limit limit_exceeded; the invariants
// hold. The seed is logged.
func testCatalogueMix(e *env) {
	seed := uint64(time.Now().UnixNano())
	e.t.Logf("seed %d", seed)
	skus := make([]string, len(mixCatalogue))
	for i, c := range mixCatalogue {
		skus[i] = e.product(fmt.Sprintf("m%02d", i), c.stock, c.limit)
	}
	randomCart := func(rng *rand.Rand) []flashorder.ItemRequest {
		var items []flashorder.ItemRequest
		for _, j := range rng.Perm(len(skus))[:1+rng.IntN(4)] {
			items = append(items, item(skus[j], int64(1+rng.IntN(3))))
		}
		return items
	}
	keyed := make([]*flashorder.PlaceOrderRequest, 40)
	for k := range keyed {
		rng := rand.New(rand.NewPCG(seed, uint64(1000+k)))
		keyed[k] = request(e.user(rng.IntN(30)), e.key(k), randomCart(rng)...)
	}
	rs := workers(16, 15, func(w, j int) result {
		rng := rand.New(rand.NewPCG(seed, uint64(w*100+j)))
		switch n := rng.IntN(10); {
		case n == 0:
			items := append(randomCart(rng), item(e.unknown(fmt.Sprint(w)), 1))
			return e.place(e.placer, request(e.user(rng.IntN(30)), "", rotate(items, j)...))
		case n <= 3:
			req := *keyed[rng.IntN(len(keyed))]
			return e.place(e.placer, &req)
		}
		return e.place(e.placer, request(e.user(rng.IntN(30)), "", randomCart(rng)...))
	})
	for _, r := range rs {
		switch {
		case e.hasUnknown(r.req):
			e.expectOne(r, flashorder.EUNKNOWNPRODUCT)
		case e.overLimit(r.req):
			e.expectOne(r, flashorder.ELIMITEXCEEDED)
		case r.req.IdempotencyKey != "":
			e.expectOne(r, ok, keyTaken, flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED)
		default:
			e.expectOne(r, ok, flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED)
		}
	}
	e.t.Logf("outcomes %v", tally(rs))
	e.verify()
}

// hasUnknown reports whether req names a SKU that is not a product.
func (e *env) hasUnknown(req *flashorder.PlaceOrderRequest) bool {
	for _, it := range req.Items {
		if e.products[it.SKU] == nil {
			return true
		}
	}
	return false
}

// overLimit reports whether req asks more units of a product than its
// per-user limit allows anyone.
func (e *env) overLimit(req *flashorder.PlaceOrderRequest) bool {
	for _, it := range req.Items {
		if p := e.products[it.SKU]; p != nil && p.PerUserLimit > 0 && it.Quantity > p.PerUserLimit {
			return true
		}
	}
	return false
}
