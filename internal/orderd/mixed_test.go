package orderd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestMixedLoadInvariants sends 2,000 mixed orders from 128 concurrent clients (single and
// multi-item, per-user limits, retried idempotency keys) and checks every
// invariant against what the clients were answered.
func TestMixedLoadInvariants(t *testing.T) {
	for _, strategy := range strategies {
		for _, db := range testenv.Databases(t) {
			// One at a time: each fills the 2 cores, and run together
			// the slowest requests of segment's refill path could wait
			// past the server's 30 s write timeout.
			t.Run(db.Engine+"/"+strategy, func(t *testing.T) {
				_, c := startOrderd(t, db.URL, "--strategy", strategy)
				testMixedLoad(t, []*orderhttp.Client{c})
			})
		}
	}
}

// TestTwoInstancesOneSKU races two orderd instances on one database for one
// SKU: the product row lock must arbitrate between their batches.
func TestTwoInstancesOneSKU(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		if db.Engine == "sqlite" {
			continue // one orderd per SQLite file
		}
		t.Run(db.Engine, func(t *testing.T) {
			t.Parallel()
			_, c1 := startOrderd(t, db.URL, "--strategy", "batch")
			_, c2 := startOrderd(t, db.URL, "--strategy", "batch")
			putProduct(t, c1, "twin-hot", 300, 0)
			var mu sync.Mutex
			counts := map[string]int{}
			var wg sync.WaitGroup
			for i := range 1000 {
				c := []*orderhttp.Client{c1, c2}[i%2]
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := c.CreateOrder(context.Background(), order(fmt.Sprintf("twin-%d", i), item("twin-hot", 1)), "")
					mu.Lock()
					counts[errCode(t, err)]++
					mu.Unlock()
				}()
			}
			wg.Wait()
			if counts[""] != 300 || counts[flashorder.ESOLDOUT] != 700 {
				t.Fatalf("two instances, 1000 orders for 300 units: %v", counts)
			}
			if l := auditLine(t, c2, "twin-hot"); l.Available != 0 || l.Sold != 300 {
				t.Fatalf("audit %+v", l)
			}
		})
	}
}

type placed struct {
	req   flashorder.OrderRequest
	key   string
	order *flashorder.Order
	code  string
}

// testMixedLoad drives 2,000 concurrent mixed orders through the clients and
// checks the invariants: the audit holds, stock taken equals the units of the
// 201s, per-user limits hold, one order per key, every 201 is stored.
func testMixedLoad(t *testing.T, clients []*orderhttp.Client) {
	ctx := context.Background()
	c := clients[0]
	stock := map[string]int64{"mix-a": 400, "mix-b": 150, "mix-c": 60}
	limit := map[string]int64{"mix-a": 0, "mix-b": 2, "mix-c": 1}
	for sku, n := range stock {
		putProduct(t, c, sku, n, limit[sku])
	}
	rng := rand.New(rand.NewPCG(1, 2))
	skus := []string{"mix-a", "mix-b", "mix-c"}
	var jobs []placed
	for i := range 2000 {
		user := fmt.Sprintf("mix-user-%d", rng.IntN(300))
		var req flashorder.OrderRequest
		if rng.IntN(4) == 0 { // a quarter are multi-item
			first := rng.IntN(3)
			second := (first + 1 + rng.IntN(2)) % 3
			req = order(user, item(skus[first], 1+rng.Int64N(2)), item(skus[second], 1))
		} else {
			req = order(user, item(skus[rng.IntN(3)], 1+rng.Int64N(2)))
		}
		key := ""
		if rng.IntN(3) == 0 {
			key = fmt.Sprintf("mix-key-%d", i)
		}
		jobs = append(jobs, placed{req: req, key: key})
		if key != "" && rng.IntN(4) == 0 { // a retry of the same request
			jobs = append(jobs, placed{req: req, key: key})
		}
	}
	// 128 clients at a time: enough to fill every batch and connection
	// pool, without making a busy 2-core machine queue requests for longer
	// than the server's write timeout.
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			j := &jobs[i]
			res, err := clients[i%len(clients)].CreateOrder(ctx, j.req, j.key)
			j.code = errCode(t, err)
			if err == nil {
				j.order = res.Order
			}
		}()
	}
	wg.Wait()

	sold := map[string]int64{}
	perUser := map[string]int64{}
	byKey := map[string]string{}
	seen := map[string]bool{}
	codes := map[string]int{}
	for _, j := range jobs {
		codes[j.code]++
		switch j.code {
		case "", flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED, flashorder.EINPROGRESS:
		default:
			t.Errorf("unexpected answer %q to %+v", j.code, j.req)
		}
		if j.order == nil {
			continue
		}
		if j.key != "" {
			if id, ok := byKey[j.key]; ok && id != j.order.ID {
				t.Fatalf("key %s answered with orders %s and %s", j.key, id, j.order.ID)
			}
			byKey[j.key] = j.order.ID
		}
		if seen[j.order.ID] {
			continue // a replay
		}
		seen[j.order.ID] = true
		for _, it := range j.order.Items {
			sold[it.SKU] += it.Quantity
			perUser[j.req.UserID+"/"+it.SKU] += it.Quantity
		}
		got, err := c.Order(ctx, j.order.ID)
		if err != nil || got.UserID != j.req.UserID || len(got.Items) != len(j.order.Items) {
			t.Fatalf("order %s answered 201 reads back %+v, %v", j.order.ID, got, err)
		}
	}
	for key, n := range perUser {
		sku := key[len(key)-5:]
		if l := limit[sku]; l > 0 && n > l {
			t.Fatalf("%s holds %d units, limit %d", key, n, l)
		}
	}
	a := assertAudit(t, c)
	for _, l := range a.Products {
		if _, ok := stock[l.SKU]; ok && (l.Sold != sold[l.SKU] || l.Restocked != stock[l.SKU]) {
			t.Fatalf("%s: audit %+v, clients saw %d units sold", l.SKU, l, sold[l.SKU])
		}
	}
	if sold["mix-a"] != 400 {
		t.Fatalf("mix-a, with no limit and more demand than stock, did not sell out: %d of 400 (%v)", sold["mix-a"], codes)
	}
	t.Logf("answers %v, sold %v", codes, sold)
}
