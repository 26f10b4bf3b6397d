package checkout_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/checkout/placertest"
	"github.com/flashorder/flashorder/gormdb"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

func putProduct(t *testing.T, db *gormdb.DB, sku string, stock, limit int64) {
	t.Helper()
	if _, err := db.PutProduct(context.Background(), flashorder.Product{SKU: sku, Name: sku, PriceCents: 100, Stock: stock, PerUserLimit: limit}); err != nil {
		t.Fatalf("put product %s: %v", sku, err)
	}
}

func place(t *testing.T, row *checkout.Row, user string, items ...flashorder.ItemRequest) *flashorder.Order {
	t.Helper()
	req := flashorder.OrderRequest{UserID: user, Items: items}
	o, err := row.PlaceOrder(context.Background(), &flashorder.PlaceOrderRequest{OrderRequest: req, Fingerprint: req.Fingerprint()})
	if err != nil {
		t.Fatalf("place order for %s: %v", user, err)
	}
	return o
}

func stockOf(t *testing.T, db *gormdb.DB, sku string) int64 {
	t.Helper()
	p, err := db.Product(context.Background(), sku)
	if err != nil {
		t.Fatal(err)
	}
	return p.Stock
}

func assertAudit(t *testing.T, db *gormdb.DB) {
	t.Helper()
	a, err := db.Audit(context.Background())
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	if !a.OK {
		t.Fatalf("audit failed: %+v", a.Products)
	}
}

func statusOf(t *testing.T, db *gormdb.DB, id string) flashorder.Status {
	t.Helper()
	o, err := db.Order(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return o.Status
}

// lateLifecycle returns a lifecycle whose clock runs an hour ahead, so that
// every created order is due to expire.
func lateLifecycle(db *gormdb.DB) *checkout.Lifecycle {
	lc := checkout.NewLifecycle(db)
	lc.Now = func() time.Time { return time.Now().Add(time.Hour) }
	return lc
}

// TestLifecycleStateMachine runs pay, cancel and expire from every status on
// every database: only a created order moves, cancel and expire return stock
// and quota, and a refused transition changes nothing.
func TestLifecycleStateMachine(t *testing.T) {
	all := []flashorder.Status{flashorder.StatusCreated, flashorder.StatusPaid, flashorder.StatusCancelled, flashorder.StatusExpired}
	for _, tdb := range testenv.Databases(t) {
		t.Run(tdb.Engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := placertest.Open(t, tdb.URL)
			row := checkout.NewRow(db)
			onTime := checkout.NewLifecycle(db)
			late := lateLifecycle(db)
			ops := []struct {
				to  flashorder.Status
				run func(id string) (*flashorder.Order, error)
			}{
				{flashorder.StatusPaid, func(id string) (*flashorder.Order, error) { return onTime.PayOrder(ctx, id) }},
				{flashorder.StatusCancelled, func(id string) (*flashorder.Order, error) { return onTime.CancelOrder(ctx, id) }},
				{flashorder.StatusExpired, func(id string) (*flashorder.Order, error) {
					expired, err := late.ExpireDue(ctx, 10)
					for _, o := range expired {
						if o.ID == id {
							return o, err
						}
					}
					if err == nil {
						err = flashorder.Errorf(flashorder.EINVALIDSTATE, "not expired")
					}
					return nil, err
				}},
			}
			for i, from := range all {
				for j, op := range ops {
					sku := fmt.Sprintf("sm-%d-%d", i, j)
					user := "u-" + sku
					putProduct(t, db, sku, 10, 2)
					o := place(t, row, user, flashorder.ItemRequest{SKU: sku, Quantity: 2})
					if err := db.Exec(ctx, "UPDATE orders SET status = ? WHERE id = ?", string(from), o.ID); err != nil {
						t.Fatal(err)
					}
					if !from.Active() {
						// Keep the invariant for the forced status: what an
						// earlier cancel would have given back.
						if err := db.Exec(ctx, "UPDATE products SET stock = stock + 2 WHERE sku = ?", sku); err != nil {
							t.Fatal(err)
						}
						if err := db.Exec(ctx, "UPDATE user_purchases SET quantity = 0 WHERE user_id = ? AND sku = ?", user, sku); err != nil {
							t.Fatal(err)
						}
					}
					stockBefore := stockOf(t, db, sku)
					got, err := op.run(o.ID)
					want := from.CanBecome(op.to)
					name := fmt.Sprintf("%s -> %s", from, op.to)
					switch {
					case want && err != nil:
						t.Fatalf("%s: %v", name, err)
					case want && (got.Status != op.to || got.ID != o.ID || len(got.Items) != 1 || got.Items[0] != o.Items[0] || got.TotalCents != o.TotalCents):
						t.Fatalf("%s: answered %+v, placed %+v", name, got, o)
					case !want && flashorder.ErrorCode(err) != flashorder.EINVALIDSTATE:
						t.Fatalf("%s: %v, want invalid_state", name, err)
					}
					wantStatus, wantStock := from, stockBefore
					if want {
						wantStatus = op.to
						if !op.to.Active() {
							wantStock += 2
						}
					}
					if s := statusOf(t, db, o.ID); s != wantStatus {
						t.Fatalf("%s: status %s, want %s", name, s, wantStatus)
					}
					if s := stockOf(t, db, sku); s != wantStock {
						t.Fatalf("%s: stock %d, want %d", name, s, wantStock)
					}
					assertAudit(t, db)
					// The quota is back exactly when the order no longer holds stock:
					// the user can order the full limit again.
					_, err = row.PlaceOrder(ctx, &flashorder.PlaceOrderRequest{OrderRequest: flashorder.OrderRequest{UserID: user, Items: []flashorder.ItemRequest{{SKU: sku, Quantity: 2}}}})
					if active := wantStatus.Active(); active != (flashorder.ErrorCode(err) == flashorder.ELIMITEXCEEDED) || (!active && err != nil) {
						t.Fatalf("%s: reorder the limit with the order %s: %v", name, wantStatus, err)
					}
				}
			}
			if _, err := onTime.PayOrder(ctx, "no-such-order"); flashorder.ErrorCode(err) != flashorder.ENOTFOUND {
				t.Fatalf("pay unknown order: %v", err)
			}
			if _, err := onTime.CancelOrder(ctx, "no-such-order"); flashorder.ErrorCode(err) != flashorder.ENOTFOUND {
				t.Fatalf("cancel unknown order: %v", err)
			}
			assertAudit(t, db)
		})
	}
}

// TestLifecycleRaces sends 100 concurrent transitions at one order: exactly
// one wins, every other gets invalid_state, and stock comes back at most once.
func TestLifecycleRaces(t *testing.T) {
	for _, tdb := range testenv.Databases(t) {
		t.Run(tdb.Engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := placertest.Open(t, tdb.URL)
			row := checkout.NewRow(db)
			lc := checkout.NewLifecycle(db)
			late := lateLifecycle(db)
			races := map[string]func(i int, id string) (flashorder.Status, error){
				"pay-vs-cancel": func(i int, id string) (flashorder.Status, error) {
					if i%2 == 0 {
						_, err := lc.PayOrder(ctx, id)
						return flashorder.StatusPaid, err
					}
					_, err := lc.CancelOrder(ctx, id)
					return flashorder.StatusCancelled, err
				},
				"cancel-only": func(i int, id string) (flashorder.Status, error) {
					_, err := lc.CancelOrder(ctx, id)
					return flashorder.StatusCancelled, err
				},
				// A payment racing the sweeper: the order is due, so one of
				// expire (sweeper) or the late payment's own expiry wins, and
				// no payment ever does.
				"late-pay-vs-expire": func(i int, id string) (flashorder.Status, error) {
					if i%10 == 0 {
						expired, err := late.ExpireDue(ctx, 10)
						if err == nil && len(expired) == 0 {
							err = flashorder.Errorf(flashorder.EINVALIDSTATE, "nothing expired")
						}
						return flashorder.StatusExpired, err
					}
					_, err := late.PayOrder(ctx, id)
					return flashorder.StatusPaid, err
				},
			}
			for name, race := range races {
				sku := "race-" + name
				putProduct(t, db, sku, 1, 1)
				o := place(t, row, "racer-"+name, flashorder.ItemRequest{SKU: sku, Quantity: 1})
				var mu sync.Mutex
				wins := map[flashorder.Status]int{}
				codes := map[string]int{}
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range 100 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						to, err := race(i, o.ID)
						mu.Lock()
						defer mu.Unlock()
						if err == nil {
							wins[to]++
						} else {
							codes[flashorder.ErrorCode(err)]++
							if flashorder.ErrorCode(err) != flashorder.EINVALIDSTATE {
								t.Errorf("%s: %v", name, err)
							}
						}
					}()
				}
				close(start)
				wg.Wait()
				total := 0
				var winner flashorder.Status
				for s, n := range wins {
					total += n
					winner = s
				}
				// In the late race the payments expire the order themselves,
				// so the winner may have answered invalid_state: read it back.
				final := statusOf(t, db, o.ID)
				if name == "late-pay-vs-expire" {
					if wins[flashorder.StatusPaid] != 0 || total > 1 || final != flashorder.StatusExpired {
						t.Fatalf("%s: wins %v codes %v final %s: want the order expired and no payment", name, wins, codes, final)
					}
				} else if total != 1 || codes[flashorder.EINVALIDSTATE] != 99 || final != winner {
					t.Fatalf("%s: wins %v codes %v final %s, want exactly one winner", name, wins, codes, final)
				}
				wantStock := int64(1)
				if final.Active() {
					wantStock = 0
				}
				if s := stockOf(t, db, sku); s != wantStock {
					t.Fatalf("%s: stock %d after %s, want %d", name, s, final, wantStock)
				}
				assertAudit(t, db)
			}
		})
	}
}

// TestLifecycleUnderLoad places multi-item orders while others are cancelled
// and a sweeper expires the rest, all at once: lock order keeps them free of
// deadlocks that outlast the retries, and the stock audit holds throughout.
func TestLifecycleUnderLoad(t *testing.T) {
	for _, tdb := range testenv.Databases(t) {
		t.Run(tdb.Engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := placertest.Open(t, tdb.URL)
			row := checkout.NewRow(db)
			lc := checkout.NewLifecycle(db)
			late := lateLifecycle(db)
			skus := []string{"load-a", "load-b", "load-c"}
			for _, sku := range skus {
				putProduct(t, db, sku, 40, 3)
			}
			stop := make(chan struct{})
			sweepDone := make(chan int)
			go func() {
				n := 0
				for {
					select {
					case <-stop:
						sweepDone <- n
						return
					default:
					}
					expired, err := late.ExpireDue(ctx, 5)
					if err != nil {
						t.Errorf("sweep: %v", err)
					}
					n += len(expired)
				}
			}()
			var wg sync.WaitGroup
			for g := range 24 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					user := fmt.Sprintf("lu-%d", g%8) // users share quota rows
					for i := range 15 {
						// Items in varying order; placement sorts them.
						a, b := skus[(g+i)%3], skus[(g+2*i+1)%3]
						items := []flashorder.ItemRequest{{SKU: a, Quantity: 1}}
						if b != a {
							items = append(items, flashorder.ItemRequest{SKU: b, Quantity: 1})
						}
						req := flashorder.OrderRequest{UserID: user, Items: items}
						o, err := row.PlaceOrder(ctx, &flashorder.PlaceOrderRequest{OrderRequest: req, Fingerprint: req.Fingerprint()})
						switch flashorder.ErrorCode(err) {
						case "":
						case flashorder.ESOLDOUT, flashorder.ELIMITEXCEEDED:
							continue
						default:
							t.Errorf("place: %v", err)
							continue
						}
						switch i % 3 {
						case 0:
							_, err = lc.CancelOrder(ctx, o.ID)
						case 1:
							_, err = lc.PayOrder(ctx, o.ID)
						default:
							// Left to the sweeper.
						}
						if err != nil && flashorder.ErrorCode(err) != flashorder.EINVALIDSTATE {
							t.Errorf("end order: %v", err)
						}
					}
				}()
			}
			wg.Wait()
			close(stop)
			swept := <-sweepDone
			assertAudit(t, db)
			// Every order still created expires now: only paid ones hold stock.
			if _, err := late.ExpireDue(ctx, 1000); err != nil {
				t.Fatal(err)
			}
			assertAudit(t, db)
			// The quota counters hold exactly the units of paid orders: each
			// user can buy precisely the rest of the limit.
			for _, sku := range skus {
				putProduct(t, db, sku, 1000, 3)
			}
			for u := range 8 {
				user := fmt.Sprintf("lu-%d", u)
				paid := map[string]int64{}
				page, err := db.Orders(ctx, flashorder.OrderFilter{UserID: user, Limit: flashorder.MaxListLimit})
				if err != nil || page.Next != "" {
					t.Fatalf("orders of %s: %v (more than one page)", user, err)
				}
				for _, o := range page.Orders {
					if o.Status == flashorder.StatusCreated {
						t.Fatalf("order %s still created after the final sweep", o.ID)
					}
					if o.Status == flashorder.StatusPaid {
						for _, it := range o.Items {
							paid[it.SKU] += it.Quantity
						}
					}
				}
				for _, sku := range skus {
					if rest := 3 - paid[sku]; rest > 0 {
						place(t, row, user, flashorder.ItemRequest{SKU: sku, Quantity: rest})
					}
					req := flashorder.OrderRequest{UserID: user, Items: []flashorder.ItemRequest{{SKU: sku, Quantity: 1}}}
					if _, err := row.PlaceOrder(ctx, &flashorder.PlaceOrderRequest{OrderRequest: req}); flashorder.ErrorCode(err) != flashorder.ELIMITEXCEEDED {
						t.Fatalf("%s with %d paid units of %s: one unit over the limit gave %v", user, paid[sku], sku, err)
					}
				}
			}
			t.Logf("%s: sweeper expired %d orders during the load", tdb.Engine, swept)
		})
	}
}
