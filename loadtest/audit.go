package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
)

// AuditReport is the after-run check of the server against what the client
// saw. OK is false when any violation was found.
type AuditReport struct {
	OK bool `json:"ok"`
	// Violations describes every problem found (capped per kind).
	Violations []string `json:"violations"`
	// ServerAuditOK is the admin audit endpoint's own verdict after the run.
	ServerAuditOK bool `json:"server_audit_ok"`
	// Orders is the number of distinct order ids answered with 201.
	Orders int `json:"orders"`
	// Checked is how many of them were read back with GET /orders/{id}.
	Checked int `json:"checked"`
	// Uncertain is the number of requests whose outcome the client does not
	// know (timeouts, transport errors, 5xx): the server may have made them.
	Uncertain int64 `json:"uncertain"`
	// SKUs is the stock check of each product of the scenario.
	SKUs []SKUAudit `json:"skus"`
	// Window is a drop's sale-window check; nil in other runs.
	Window *WindowCheck `json:"window,omitempty"`
	// Queue is a drop's waiting-room check; nil without the queue.
	Queue *QueueAudit `json:"queue,omitempty"`
	// Events is the check of the run's order events; nil without
	// Config.Events.
	Events *EventsAudit `json:"events,omitempty"`
}

// WindowCheck is a drop's audit of the sale window: every order answered 201
// must have been created (its created_at, on orderd's clock) at or after
// starts_at and before ends_at, and a drop whose users wanted more than the
// stock must sell it to the last unit.
type WindowCheck struct {
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
	// Orders is the number of distinct 201s whose created_at was checked,
	// all of them; BeforeStart and AfterEnd those outside the window.
	Orders      int `json:"orders"`
	BeforeStart int `json:"before_start"`
	AfterEnd    int `json:"after_end"`
	// First and Last are the earliest and the latest created_at.
	First time.Time `json:"first,omitempty"`
	Last  time.Time `json:"last,omitempty"`
	// Demand is the units the users wanted (each buys once); SoldOut
	// whether the drop sold its stock to the last unit. SoldOutChecked is
	// false when it could not be asked: demand below the stock, or users
	// still trying when the drop's time was up.
	Demand         int64 `json:"demand"`
	SoldOutChecked bool  `json:"sold_out_checked"`
	SoldOut        bool  `json:"sold_out"`
}

// contains reports whether t lies in the sale window.
func (wc *WindowCheck) contains(t time.Time) bool {
	return !t.Before(wc.StartsAt) && t.Before(wc.EndsAt)
}

// SKUAudit compares one product's stock movement during the run with the
// client's 201s.
type SKUAudit struct {
	SKU    string               `json:"sku"`
	Before flashorder.AuditLine `json:"before"`
	After  flashorder.AuditLine `json:"after"`
	// Taken is available before minus available after; Sold the growth of
	// sold units.
	Taken int64 `json:"taken"`
	Sold  int64 `json:"sold"`
	// ClientUnits is the sum of quantities in the distinct orders the client
	// got 201 for; UncertainUnits those of requests with unknown outcome.
	ClientUnits    int64 `json:"client_units"`
	UncertainUnits int64 `json:"uncertain_units"`
	OK             bool  `json:"ok"`
}

// maxPerKind caps how many violations of one kind the report lists.
const maxPerKind = 20

type violations struct {
	list   []string
	counts map[string]int
}

func (v *violations) add(kind, format string, args ...any) {
	if v.counts == nil {
		v.counts = map[string]int{}
	}
	v.counts[kind]++
	if v.counts[kind] <= maxPerKind {
		v.list = append(v.list, kind+": "+fmt.Sprintf(format, args...))
	} else if v.counts[kind] == maxPerKind+1 {
		v.list = append(v.list, kind+": more violations of this kind not listed")
	}
}

// audit checks the server after the run: the admin audit, the stock deltas
// against the 201s, every (or a sample of) 201 by GET, per-user limits, and
// that no order id answered two keys or users. With Config.Events it then
// pays and cancels the shares Config.EventsPay and EventsCancel of the 201s
// (after the stock check: a cancel returns stock) and checks the events.
func (r *runner) audit(ctx context.Context, admin *orderhttp.Client, before map[string]flashorder.AuditLine, ws []workerState) *AuditReport {
	rep := &AuditReport{}
	var v violations
	uncertain := map[string]int64{}
	for _, w := range ws {
		for _, s := range w.violations {
			v.add("answer", "%s", s)
		}
		for sku, q := range w.uncertain {
			uncertain[sku] += q
		}
		rep.Uncertain += w.uncertainRequests
	}
	byID := distinctOrders(ws, &v)
	rep.Orders = len(byID)
	units := r.checkLimits(byID, &v)
	r.checkStock(ctx, admin, before, units, uncertain, rep, &v)
	if r.drop != nil {
		rep.Window = r.drop.checkWindow(byID, &v)
		r.drop.checkSoldOut(rep, &v)
		if q := r.drop.q; q != nil && q.queue {
			rep.Queue = q.audit(byID, &v)
		}
	}
	var moves map[string]move
	if r.events != nil {
		picked := pickMoves(byID, r.cfg.EventsPay, r.cfg.EventsCancel, r.runID)
		moves = transition(ctx, admin, picked, &v)
		rep.Events = r.auditEvents(ctx, admin, byID, moves, &v)
	}
	r.readBack(ctx, admin, byID, moves, rep, &v)
	rep.Violations = v.list
	rep.OK = len(v.list) == 0
	return rep
}

// checkLimits returns the units per SKU of the distinct orders, and notes
// every user who holds more of a SKU than the scenario's per-user limit.
func (r *runner) checkLimits(byID map[string]record, v *violations) map[string]int64 {
	units := map[string]int64{}
	type userSKU struct{ user, sku string }
	perUser := map[userSKU]int64{}
	for _, rec := range byID {
		for _, it := range rec.Items {
			units[it.SKU] += it.Quantity
			perUser[userSKU{rec.User, it.SKU}] += it.Quantity
		}
	}
	if limit := r.cfg.Scenario.PerUserLimit; limit > 0 {
		keys := make([]userSKU, 0)
		for k, q := range perUser {
			if q > limit {
				keys = append(keys, k)
			}
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].user < keys[j].user })
		for _, k := range keys {
			v.add("per-user limit", "user %s holds %d units of %s in 201s, the limit is %d", k.user, perUser[k], k.sku, limit)
		}
	}
	return units
}

// checkStock compares the server's audit after the run with the one before
// and with the units of the client's 201s, SKU by SKU, into rep.SKUs.
func (r *runner) checkStock(ctx context.Context, admin *orderhttp.Client, before map[string]flashorder.AuditLine,
	units, uncertain map[string]int64, rep *AuditReport, v *violations) {
	a, err := admin.Audit(ctx)
	if err != nil {
		v.add("audit endpoint", "%v", err)
		return
	}
	rep.ServerAuditOK = a.OK
	if !a.OK {
		for _, l := range a.Products {
			if !l.OK {
				v.add("audit endpoint", "product %s: restocked %d, available %d, sold %d: restocked != available + sold or available < 0",
					l.SKU, l.Restocked, l.Available, l.Sold)
			}
		}
		if len(v.counts) == 0 || v.counts["audit endpoint"] == 0 {
			v.add("audit endpoint", "the server's audit says ok=false")
		}
	}
	after := map[string]flashorder.AuditLine{}
	for _, l := range a.Products {
		after[l.SKU] = l
	}
	for _, sku := range r.skus {
		s := SKUAudit{SKU: sku, Before: before[sku], ClientUnits: units[sku], UncertainUnits: uncertain[sku], OK: true}
		l, ok := after[sku]
		if !ok {
			v.add("stock", "the audit after the run does not list product %s", sku)
			s.OK = false
			rep.SKUs = append(rep.SKUs, s)
			continue
		}
		s.After = l
		s.Taken = s.Before.Available - l.Available
		s.Sold = l.Sold - s.Before.Sold
		fail := func(format string, args ...any) {
			s.OK = false
			v.add("stock", "%s: "+format, append([]any{sku}, args...)...)
		}
		if l.Sold > l.Restocked {
			fail("sold %d > restocked %d (oversold)", l.Sold, l.Restocked)
		}
		if l.Available < 0 {
			fail("available %d < 0", l.Available)
		}
		if s.Taken != s.Sold {
			fail("stock taken during the run %d != units sold during the run %d", s.Taken, s.Sold)
		}
		if s.Taken < s.ClientUnits {
			fail("stock taken %d < units in the client's 201s %d (an answered order took no stock, or stock came back)", s.Taken, s.ClientUnits)
		}
		if s.Taken > s.ClientUnits+s.UncertainUnits {
			fail("stock taken %d > units in the client's 201s %d + units of requests with unknown outcome %d (oversell, or orders nobody was told about)",
				s.Taken, s.ClientUnits, s.UncertainUnits)
		}
		rep.SKUs = append(rep.SKUs, s)
	}
}

// readBack reads every (sampled) 201 back over the API, 16 at a time: each
// must exist, with the same user and items, and still be active, unless the
// audit moved it (moves): then paid or cancelled as its 200 said, or
// anything when the answer was not a 200.
func (r *runner) readBack(ctx context.Context, admin *orderhttp.Client, byID map[string]record, moves map[string]move, rep *AuditReport, v *violations) {
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if n := r.cfg.AuditSample; n >= 0 && len(ids) > n {
		rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		ids = ids[:n]
	}
	rep.Checked = len(ids)
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(16)
	for _, id := range ids {
		g.Go(func() error {
			rec := byID[id]
			m, moved := moves[id]
			o, err := admin.Order(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			var ce *orderhttp.ClientError
			switch {
			case errors.As(err, &ce) && ce.Status == 404:
				v.add("lost order", "order %s (key %s, user %s) was answered 201 but GET says 404", id, rec.Key, rec.User)
			case err != nil:
				v.add("lost order", "read order %s: %v", id, err)
			case o.UserID != rec.User || !sameOrderItems(o.Items, rec.Items):
				v.add("order mismatch", "order %s is user %s items %v in the database, the 201 was for user %s items %v", id, o.UserID, o.Items, rec.User, rec.Items)
			case moved && m.state == moveDone && o.Status != m.want.Status():
				v.add("order status", "order %s was answered 200 to its %s and has status %s", id, verbOf(m.want), o.Status)
			case !moved && !o.Status.Active():
				v.add("order status", "order %s has status %s right after the run", id, o.Status)
			case rep.Window != nil && !rep.Window.contains(o.CreatedAt):
				v.add("sale window", "order %s is stored as created at %s, outside the sale window %s to %s",
					id, stamp(o.CreatedAt), stamp(rep.Window.StartsAt), stamp(rep.Window.EndsAt))
			}
			return nil
		})
	}
	_ = g.Wait()
}

// checkWindow checks the created_at of every distinct 201 against the sale
// window.
func (d *dropRun) checkWindow(byID map[string]record, v *violations) *WindowCheck {
	wc := &WindowCheck{StartsAt: d.startsAt, EndsAt: d.endsAt}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rec := byID[id]
		t := rec.CreatedAt
		if t.IsZero() {
			v.add("sale window", "the 201 of order %s (user %s) has no created_at", id, rec.User)
			continue
		}
		wc.Orders++
		if wc.First.IsZero() || t.Before(wc.First) {
			wc.First = t
		}
		if t.After(wc.Last) {
			wc.Last = t
		}
		switch {
		case t.Before(wc.StartsAt):
			wc.BeforeStart++
			v.add("sale window", "order %s (user %s) was created at %s, %s before starts_at %s",
				id, rec.User, stamp(t), wc.StartsAt.Sub(t), stamp(wc.StartsAt))
		case !t.Before(wc.EndsAt):
			wc.AfterEnd++
			v.add("sale window", "order %s (user %s) was created at %s, at or after ends_at %s", id, rec.User, stamp(t), stamp(wc.EndsAt))
		}
	}
	return wc
}

// checkSoldOut checks that a drop whose users wanted at least the stock sold
// it to the last unit: units left once every user bought or gave up mean
// that orders were refused while there was stock. Users still trying when the
// drop's time was up (or the run was interrupted) leave it unasked.
func (d *dropRun) checkSoldOut(rep *AuditReport, v *violations) {
	sc := d.r.cfg.Scenario
	perUser := sc.Quantity
	if sc.PerUserLimit > 0 && sc.Quantity > sc.PerUserLimit {
		perUser = 0 // every order is over the limit
	}
	wc := rep.Window
	wc.Demand = int64(sc.Users) * perUser
	if wc.Demand < sc.Stock || d.result().Unfinished > 0 || len(rep.SKUs) != 1 || rep.SKUs[0].After.SKU == "" {
		return
	}
	wc.SoldOutChecked = true
	s := rep.SKUs[0]
	wc.SoldOut = s.After.Available < sc.Quantity
	if !wc.SoldOut {
		v.add("sold out", "%s: %d of %d units left after all %d users bought or gave up, wanting %d units: orders were refused while there was stock",
			s.SKU, s.After.Available, sc.Stock, sc.Users, wc.Demand)
	}
}

// stamp renders a time for the audit's messages: UTC, microseconds.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00") }

// distinctOrders returns the 201s by order id, and adds a violation for a key
// answered with two ids and for an id answered to two requests: two keys, two
// users, or two requests without a key.
func distinctOrders(ws []workerState, v *violations) map[string]record {
	type owner struct{ key, user string }
	byID := map[string]record{}
	owners := map[string]owner{}
	keyID := map[string]string{}
	for _, w := range ws {
		for _, rec := range w.orders {
			if rec.Key != "" {
				if prev, ok := keyID[rec.Key]; ok && prev != rec.ID {
					v.add("double order", "Idempotency-Key %s answered order %s and order %s", rec.Key, prev, rec.ID)
				}
				keyID[rec.Key] = rec.ID
			}
			o := owner{rec.Key, rec.User}
			// Without a key every 201 answers a request of its own, so an id
			// seen before was answered twice even for the same user.
			if prev, ok := owners[rec.ID]; ok && (prev != o || rec.Key == "") {
				v.add("order answered twice", "order %s answered key %q (user %s) and key %q (user %s)",
					rec.ID, prev.key, prev.user, rec.Key, rec.User)
				continue
			}
			owners[rec.ID] = o
			byID[rec.ID] = rec
		}
	}
	return byID
}

// sameItems compares a 201's items with the request's, in any order.
func sameItems(got, want []flashorder.ItemRequest) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

func sameOrderItems(got []flashorder.OrderItem, want []flashorder.ItemRequest) bool {
	g := make([]flashorder.ItemRequest, len(got))
	for i, it := range got {
		g[i] = flashorder.ItemRequest{SKU: it.SKU, Quantity: it.Quantity}
	}
	return sameItems(g, want)
}
