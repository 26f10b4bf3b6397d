package queue_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/inmem"
	"github.com/flashorder/flashorder/queue"
)

// catalog is one product whose stock a test sets; it serves the room as
// both its Catalog and its StockSource.
type catalog struct {
	mu sync.Mutex
	p  flashorder.Product
}

func (c *catalog) Product(_ context.Context, sku string) (*flashorder.Product, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sku != c.p.SKU {
		return nil, flashorder.Errorf(flashorder.ENOTFOUND, "no product %q", sku)
	}
	p := c.p
	return &p, nil
}

func (c *catalog) SaleProducts(context.Context, string) ([]*flashorder.Product, error) {
	return nil, nil
}

// set sets the stock left and the units sold.
func (c *catalog) set(stock, sold int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p.Stock, c.p.Sold, c.p.Restocked = stock, sold, stock+sold
}

// TestRoomBoundExceeded drives a room's admission rounds on a fake clock:
// an order whose admission is used a moment after its commit (counted twice
// meanwhile) is no violation, and units sold plus admissions outstanding that
// stay above the bound (the stock cut under 15 outstanding admissions) are
// reported, once.
func TestRoomBoundExceeded(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	now := t0
	cat := &catalog{p: flashorder.Product{SKU: "b-1", Name: "b", Admission: flashorder.AdmissionQueue}}
	cat.set(10, 0)
	signer, err := queue.NewSigner([]byte("room-test-secret-of-32-bytes!!!!"))
	if err != nil {
		t.Fatal(err)
	}
	store := inmem.NewQueueStore(queue.Options{IdleTimeout: time.Hour})
	var states []queue.QueueState
	room := queue.NewRoom(store, signer, cat, cat, queue.RoomOptions{Now: func() time.Time { return now },
		Observe: func(s queue.QueueState) { states = append(states, s) }})
	var tickets []string
	for i := range 20 {
		p, err := room.Join(ctx, "b-1", "user-"+string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, p.ID)
	}
	round := func() queue.QueueState {
		now = now.Add(100 * time.Millisecond)
		room.AdmitAll(ctx)
		return states[len(states)-1]
	}
	if st := round(); st.Admitted != 15 || st.Outstanding != 15 || st.Bound != 15 || st.Exceeded {
		t.Fatalf("first round: %+v, want 15 admitted (10 x 1.5)", st)
	}
	// An order committed (sold 1) whose admission is used 0.5 s later.
	cat.set(9, 1)
	for range 5 {
		if st := round(); st.Exceeded {
			t.Fatalf("an order between its commit and its admission's use: %+v", st)
		}
	}
	var admitted string
	for _, id := range tickets {
		if p, err := room.Poll(ctx, id); err == nil && p.Token != "" {
			admitted = id
			break
		}
	}
	if _, err := store.Use(ctx, admitted, now); err != nil {
		t.Fatal(err)
	}
	// The stock cut to 1 under 14 outstanding admissions: over the bound
	// (1 + 1 sold) x 1.5 = 3 for good.
	cat.set(1, 1)
	exceeded := 0
	for range 30 {
		if st := round(); st.Exceeded {
			exceeded++
			if now.Sub(t0) < 2*time.Second {
				t.Fatalf("exceeded reported after %v, before it held for the confirmation time", now.Sub(t0))
			}
		}
	}
	if exceeded != 1 {
		t.Fatalf("a lasting excess reported %d times, want once", exceeded)
	}
}
