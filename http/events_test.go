package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flashorder/flashorder"
	"github.com/flashorder/flashorder/checkout"
	"github.com/flashorder/flashorder/gormdb"
	orderhttp "github.com/flashorder/flashorder/http"
	"github.com/flashorder/flashorder/internal/testkit/testenv"
)

// TestAdminEvents pages through the published events with the admin feed
// and replays a dead letter, every answer checked against openapi.json: the
// outbox holds one event per order placed through the API, settled here as
// the relay settles them (the first dead, the others sent).
func TestAdminEvents(t *testing.T) {
	ctx := context.Background()
	db, err := gormdb.Open(ctx, testenv.SQLiteURL(t), gormdb.Options{Events: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := newServer(orderhttp.Config{Store: db, AdminToken: adminToken, Lifecycle: checkout.NewLifecycle(db)},
		checkout.NewBatch(db, checkout.BatchOptions{}), nil)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	a := newAPICheck(t, ts.URL)
	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	const get, put, post = http.MethodGet, http.MethodPut, http.MethodPost

	a.call(put, "/api/v1/products/p", admin, `{"name":"P","price_cents":5,"stock":10}`, 200, true)
	var ids []string
	for i := range 5 {
		var o flashorder.Order
		body := a.call(post, "/api/v1/orders", nil, fmt.Sprintf(`{"user_id":"u-%d","items":[{"sku":"p","quantity":1}]}`, i), 201, true)
		if err := json.Unmarshal(body, &o); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ID)
	}
	var page struct {
		Events []struct {
			Cursor string
			State  flashorder.EventState
			Event  struct {
				ID, Type, Subject string
				Data              flashorder.Order
			}
		}
		NextCursor string `json:"next_cursor"`
		More       bool
	}
	if err := json.Unmarshal(a.call(get, "/api/v1/admin/events", admin, "", 200, true), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 0 || page.NextCursor != "0" || page.More {
		t.Fatalf("before the relay: %+v, want no event", page)
	}
	pending, err := db.PendingEvents(ctx, 10)
	if err != nil || len(pending) != 5 {
		t.Fatalf("%d pending events (%v), want 5", len(pending), err)
	}
	for i, e := range pending {
		state := flashorder.EventSent
		if i == 0 {
			state = flashorder.EventDead
		}
		if err := db.SettleEvents(ctx, []flashorder.Settlement{{Position: e.Position, State: state, Attempts: 1, Cursor: int64(i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}

	var seen []string
	after := ""
	for range 5 {
		if err := json.Unmarshal(a.call(get, "/api/v1/admin/events?limit=2&after="+after, admin, "", 200, true), &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			if e.Event.Type != "order.created" || e.Event.Subject != e.Event.Data.ID {
				t.Errorf("event %+v", e)
			}
			seen = append(seen, e.Event.Data.ID)
		}
		after = page.NextCursor
		if !page.More {
			break
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(ids) {
		t.Errorf("the feed gave orders %v, want %v", seen, ids)
	}

	dead := pending[0].ID
	a.call(post, "/api/v1/admin/events/"+pending[1].ID+"/replay", admin, "", 409, true)
	a.call(post, "/api/v1/admin/events/"+dead+"/replay", admin, "", 202, true)
	a.call(post, "/api/v1/admin/events/"+dead+"/replay", admin, "", 409, true)
	if again, err := db.PendingEvents(ctx, 10); err != nil || len(again) != 1 || again[0].ID != dead || again[0].Attempts != 0 {
		t.Fatalf("after the replay: pending %+v (%v), want the dead event, no attempts", again, err)
	}
	a.call(get, "/api/v1/admin/events?limit=0", admin, "", 400, false)
	a.call(get, "/api/v1/admin/events?limit=1001", admin, "", 400, false)
	a.call(get, "/api/v1/admin/events?after=-1", admin, "", 400, false)
}
