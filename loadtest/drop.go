package loadtest

// A drop is a sale that opens at an announced moment, T0, to a crowd that
// gathered for it. Scenario.Lead > 0 makes a run one: setup puts the product
// with starts_at = T0, Lead after the run starts (and ends_at an hour after
// the drop's longest end), and Scenario.Users shoppers arrive over the lead,
// open loop, more and more of them as T0 nears. Each opens the product page,
// then orders when its own clock reads T0; clocks are off by up to
// Scenario.ClockSkew either way, so some order early and are refused
// not_started: they come back after Retry-After. A shopper stops at its
// order (201), at limit_exceeded or sale_ended; told sold_out it reloads the
// page and orders again every Scenario.Refresh for Scenario.After (a reload
// due later is not made). Errors (5xx, no answer, 429) are retried with the
// same Idempotency-Key after Retry-After or a capped backoff. The drop ends
// when every user is done; Config.Duration (by default a minute) bounds the
// sale after T0 for a server too slow to serve them all.
//
// The users are entries of one timetable, not goroutines: a dispatcher hands
// each due step to a pool of Config.Concurrency workers, so at most that many
// requests are in flight, and a step that waited for a free worker is charged
// from its intended time. The product page is measured from the actual send:
// the time orderd took.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashorder/flashorder"
	orderhttp "github.com/flashorder/flashorder/http"
)

// DropUser is one shopper of a drop, as PlanDrop plans it.
type DropUser struct {
	// Arrive is when the user opens the product page, relative to T0: never
	// after it.
	Arrive time.Duration
	// Skew is how far the user's clock is off: ahead when positive, so that
	// the user orders Skew before T0; behind, after it.
	Skew time.Duration
}

// PlanDrop plans a drop's users: their arrivals over the lead before T0 on a
// ramp whose density grows in a straight line from nothing to its peak at T0
// (the last tenth of the lead sees 19% of the users, the first tenth 1%), in
// the order of their arrival; and their clocks' errors, spread evenly over
// -skew..+skew and dealt out to the users at random with rng.
func PlanDrop(users int, lead, skew time.Duration, rng *rand.Rand) []DropUser {
	out := make([]DropUser, users)
	perm := rng.Perm(users)
	n := float64(users)
	for i := range out {
		// The density 2x on 0..1 (x the share of the lead gone by) has the
		// quantile function sqrt(q): user i arrives at its own quantile.
		q := (float64(i) + 0.5) / n
		out[i].Arrive = -time.Duration(float64(lead) * (1 - math.Sqrt(q)))
		out[i].Skew = time.Duration(float64(skew) * (2*(float64(perm[i])+0.5)/n - 1))
	}
	return out
}

// DropResult is what a drop's users did. Times in a Result count from the
// start of the run; T0 is Lead seconds after it.
type DropResult struct {
	Users int `json:"users"`
	// Lead is T0 in seconds since the start of the run.
	Lead float64 `json:"lead"`
	// StartsAt and EndsAt are the product's sale window, as setup put it.
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
	// The users by how they ended: with an order; told sold_out (and given
	// up after Scenario.After, or still reloading when the drop's time was
	// up); over the per-user limit; sale_ended; another 4xx; without a
	// final answer when the drop's time was up or the run was interrupted.
	Bought     int64 `json:"bought"`
	SoldOut    int64 `json:"sold_out"`
	Limited    int64 `json:"limited"`
	Ended      int64 `json:"ended"`
	Refused    int64 `json:"refused"`
	Unfinished int64 `json:"unfinished"`
	// EarlyOrders is the order requests sent before T0 by orderbench's
	// clock: users whose clocks run ahead.
	EarlyOrders int64 `json:"early_orders"`
}

// dropStep is what a user does next.
type dropStep uint8

const (
	stepArrive  dropStep = iota // open the product page, then order at T0 by the user's clock
	stepOrder                   // order
	stepRefresh                 // reload the page, then order again (after sold_out)
)

// dropEnd is how a user's drop ended.
type dropEnd uint8

const (
	endBought dropEnd = iota
	endSoldOut
	endLimited
	endEnded
	endRefused
	nEnds
)

// dropUser is one user's state. Only the worker running the user's current
// step touches it; the timetable's mutex hands it from one to the next.
type dropUser struct {
	skew time.Duration
	step dropStep
	// key is the Idempotency-Key of the order to send; "" for a new one. It
	// is kept after an unknown outcome, so that the retry replays it.
	key      string
	attempts int32 // keys made so far
	failures int32 // attempts in a row that failed (5xx, no answer, 429)
	// soldOut is when (since the start of the run) the user was first told
	// sold_out; 0 before.
	soldOut time.Duration
	etag    string // of the last product page, for If-None-Match
	done    bool
}

// dropTask is one step due at due (since the start of the run).
type dropTask struct {
	due  time.Duration
	user int32
}

// dropRun is a drop's timetable and its users.
type dropRun struct {
	r        *runner
	t0       time.Time // the sale's start, on orderbench's clock (starts_at)
	lead     time.Duration
	startsAt time.Time
	endsAt   time.Time
	page     string // the product page's path
	users    []dropUser
	arrive   []time.Duration // each user's arrival, since the start of the run

	mu    sync.Mutex
	queue []dropTask // a min-heap on due
	left  int        // users still going
	wake  chan struct{}

	ends  [nEnds]atomic.Int64
	early atomic.Int64

	// q is the waiting room's and the bots' part; nil without them.
	q *queueRun
}

// newDrop plans r's drop; its T0 is Lead from now.
func newDrop(r *runner) *dropRun {
	sc := r.cfg.Scenario
	t0 := time.Now().Add(sc.Lead)
	// starts_at in whole milliseconds; Add keeps the monotonic clock.
	t0 = t0.Add(-time.Duration(t0.Nanosecond() % int(time.Millisecond)))
	d := &dropRun{r: r, t0: t0, lead: sc.Lead, startsAt: t0.UTC().Round(0),
		endsAt: t0.Add(r.cfg.Duration + time.Hour).UTC().Round(0),
		page:   "/api/v1/products/" + r.skus[0], wake: make(chan struct{}, 1)}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 21))
	if sc.Admission == AdmissionQueue || sc.Bots > 0 {
		d.q = newQueueRun(d)
		d.arrive, d.users = d.q.plan(rng, sc.ClockSkew)
		d.left = len(d.users)
		return d
	}
	d.users, d.arrive, d.left = make([]dropUser, sc.Users), make([]time.Duration, sc.Users), sc.Users
	plan := PlanDrop(sc.Users, sc.Lead, sc.ClockSkew, rng)
	for i, p := range plan {
		d.users[i].skew = p.Skew
		d.arrive[i] = sc.Lead + p.Arrive
	}
	return d
}

// putProduct creates or resets p for sale from T0 until an hour after the
// drop (orderhttp.Client.PutProduct sends no sale window), and checks that
// the server took the window.
func (d *dropRun) putProduct(ctx context.Context, admin *orderhttp.Client, p flashorder.Product) error {
	starts, ends := d.startsAt.Format(time.RFC3339Nano), d.endsAt.Format(time.RFC3339Nano)
	in := flashorder.ProductInput{Name: &p.Name, PriceCents: &p.PriceCents, Stock: &p.Stock, PerUserLimit: &p.PerUserLimit,
		StartsAt: &starts, EndsAt: &ends}
	if d.q != nil && d.q.queue {
		admission := flashorder.AdmissionQueue
		in.Admission = &admission
	}
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, admin.BaseURL+"/api/v1/products/"+url.PathEscape(p.SKU), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+admin.AdminToken)
	resp, err := admin.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT answered %d: %s", resp.StatusCode, bytes.TrimSpace(answer))
	}
	var got flashorder.Product
	if err := json.Unmarshal(answer, &got); err != nil {
		return fmt.Errorf("PUT answer: %w", err)
	}
	if got.StartsAt == nil || !got.StartsAt.Equal(d.startsAt) || got.EndsAt == nil || !got.EndsAt.Equal(d.endsAt) {
		return fmt.Errorf("the server did not keep the sale window (starts_at %s, ends_at %s): it answered %s",
			starts, ends, bytes.TrimSpace(answer))
	}
	return nil
}

// run plays the drop with workers until every user is done, the sale's time
// after T0 (Config.Duration) is up, Config.Stop closes or ctx ends.
func (d *dropRun) run(ctx context.Context, workers []*worker) {
	for i, at := range d.arrive {
		d.queue = append(d.queue, dropTask{due: at, user: int32(i)})
		if d.q != nil {
			d.up(i) // the plan of a queue is not in order
		}
	}
	tasks := make(chan dropTask)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range tasks {
				d.step(ctx, w, t)
			}
		}()
	}
	d.dispatch(ctx, tasks)
	close(tasks)
	wg.Wait()
}

// dispatch hands each step to a worker when it is due, waiting for a free one
// when all are busy.
func (d *dropRun) dispatch(ctx context.Context, tasks chan<- dropTask) {
	end := time.NewTimer(time.Until(d.t0.Add(d.r.cfg.Duration)))
	defer end.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		if d.left == 0 {
			d.mu.Unlock()
			return
		}
		wait := time.Duration(-1) // nothing queued: steps in flight will queue more
		if len(d.queue) > 0 {
			next := d.queue[0]
			if wait = next.due - time.Since(d.r.start); wait <= 0 {
				d.pop()
				d.mu.Unlock()
				select {
				case tasks <- next:
					continue
				case <-end.C:
				case <-ctx.Done():
				case <-d.r.cfg.Stop:
				}
				return // next's user is left unfinished
			}
		}
		d.mu.Unlock()
		var due <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			due = timer.C
		}
		select {
		case <-due:
		case <-d.wake:
		case <-end.C:
			return
		case <-ctx.Done():
			return
		case <-d.r.cfg.Stop:
			return
		}
	}
}

// schedule queues user's next step at due, waking the dispatcher when it is
// the first one due.
func (d *dropRun) schedule(user int32, due time.Duration) {
	d.mu.Lock()
	d.queue = append(d.queue, dropTask{due: due, user: user})
	first := d.up(len(d.queue)-1) == 0
	d.mu.Unlock()
	if first {
		d.poke()
	}
}

// finish ends user's drop.
func (d *dropRun) finish(user int32, how dropEnd) {
	d.users[user].done = true
	d.ends[how].Add(1)
	d.mu.Lock()
	d.left--
	last := d.left == 0
	d.mu.Unlock()
	if last {
		d.poke()
	}
}

func (d *dropRun) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// up moves queue[i] up the heap and returns where it stopped.
func (d *dropRun) up(i int) int {
	q := d.queue
	for i > 0 {
		p := (i - 1) / 2
		if q[p].due <= q[i].due {
			break
		}
		q[p], q[i] = q[i], q[p]
		i = p
	}
	return i
}

// pop removes the first task of the heap.
func (d *dropRun) pop() {
	q := d.queue
	n := len(q) - 1
	q[0] = q[n]
	q = q[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && q[c+1].due < q[c].due {
			c++
		}
		if q[i].due <= q[c].due {
			break
		}
		q[i], q[c] = q[c], q[i]
		i = c
	}
	d.queue = q
}

// step runs t's step for its user on worker w.
func (d *dropRun) step(ctx context.Context, w *worker, t dropTask) {
	if ctx.Err() != nil {
		return // left unfinished
	}
	if d.q.handles(t.user) {
		d.q.step(ctx, w, t)
		return
	}
	u := &d.users[t.user]
	switch u.step {
	case stepArrive:
		d.loadPage(ctx, w, u)
		// The user orders when its own clock reads T0, at once if past.
		u.step = stepOrder
		d.schedule(t.user, max(time.Since(d.r.start), d.lead-u.skew))
		return
	case stepRefresh:
		if time.Since(d.r.start)-u.soldOut >= d.r.cfg.Scenario.After {
			// Its time ran out while the reload waited for a worker.
			d.finish(t.user, endSoldOut)
			return
		}
		d.loadPage(ctx, w, u) // and orders right after it
	}
	d.order(ctx, w, t.user, u, d.r.start.Add(t.due))
}

// loadPage GETs the product page for u, with the ETag of its last one.
func (d *dropRun) loadPage(ctx context.Context, w *worker, u *dropUser) {
	sent := time.Now()
	ra, _, err := w.roundTrip(ctx, w.target(), &message{method: http.MethodGet, path: d.page, etag: u.etag})
	done := time.Now()
	a := classifyAnswer(ctx, ra.status, "", err)
	if a.Code == CodeCancelled {
		return
	}
	if ra.status == http.StatusOK && string(ra.etag) != u.etag {
		u.etag = string(ra.etag)
	}
	w.shard.recordPage(done.Sub(sent), a)
}

// order sends u's order and plans what the user does after its answer.
func (d *dropRun) order(ctx context.Context, w *worker, id int32, u *dropUser, intended time.Time) {
	r := d.r
	sc := &r.cfg.Scenario
	rq := &request{items: r.singleItems[0], resend: u.key != ""}
	if d.q != nil {
		d.q.request(id, rq)
	} else {
		rq.user = r.users[id]
	}
	if len(r.auths) > 0 {
		rq.auth = r.auths[id]
	}
	if u.key == "" && !sc.NoKeys {
		u.attempts++
		u.key = r.runID + "-d" + strconv.Itoa(int(id)) + "-" + strconv.Itoa(int(u.attempts))
	}
	rq.key = u.key
	w.body = appendOrderJSON(w.body[:0], rq.user, rq.items)
	rq.body = w.body
	sent := time.Now()
	if sent.Before(d.t0) {
		d.early.Add(1)
	}
	a, ans := w.order(ctx, w.target(), rq, intended, sent, true)
	now := time.Since(r.start)
	if a.IsError() || a.Status == http.StatusTooManyRequests || a.Code == flashorder.EINPROGRESS {
		// The outcome is unknown, or the server asked to come back: the
		// same order again, with the same key.
		u.failures++
		d.schedule(id, now+backoff(u.failures, ans.retryAfter, w.rng))
		return
	}
	u.key, u.failures = "", 0
	if a.Status == http.StatusCreated && !ans.replayed && d.q != nil {
		d.q.orders.Add(1)
		d.q.users[id].units += rq.items[0].Quantity
	}
	if a.Code != CodeCancelled && d.q.afterOrder(w, id, a, ans, now) {
		return
	}
	switch {
	case a.Code == CodeCancelled:
		// The run was interrupted: left unfinished.
	case a.Status == http.StatusCreated:
		d.finish(id, endBought)
	case a.Code == CodeNotStarted:
		wait := time.Duration(ans.retryAfter) * time.Second
		if wait <= 0 {
			wait = time.Second
		}
		d.schedule(id, now+wait)
	case a.Code == CodeSoldOut:
		if u.soldOut == 0 {
			u.soldOut = now
		}
		next := now + time.Duration(float64(sc.Refresh)*(0.5+w.rng.Float64()))
		if next-u.soldOut >= sc.After {
			d.finish(id, endSoldOut) // its next reload would come too late
			return
		}
		u.step = stepRefresh
		d.schedule(id, next)
	case a.Code == CodeLimitExceeded:
		d.finish(id, endLimited)
	case a.Code == CodeSaleEnded:
		d.finish(id, endEnded)
	default:
		d.finish(id, endRefused)
	}
}

// backoff is how long a user waits before its failures-th retry in a row:
// Retry-After when the server sent one, else 100ms doubling up to 2s, give
// or take a fifth.
func backoff(failures int32, retryAfter int, rng *rand.Rand) time.Duration {
	if retryAfter > 0 {
		return time.Duration(retryAfter) * time.Second
	}
	d := min(100*time.Millisecond<<min(failures-1, 5), 2*time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*rng.Float64()))
}

// result is what the users did, once the drop is over.
func (d *dropRun) result() *DropResult {
	sc := d.r.cfg.Scenario
	res := &DropResult{Users: sc.Users, Lead: d.lead.Seconds(), StartsAt: d.startsAt, EndsAt: d.endsAt,
		Bought: d.ends[endBought].Load(), SoldOut: d.ends[endSoldOut].Load(), Limited: d.ends[endLimited].Load(),
		Ended: d.ends[endEnded].Load(), Refused: d.ends[endRefused].Load(), EarlyOrders: d.early.Load()}
	for _, u := range d.users {
		switch {
		case u.done:
		case u.soldOut > 0:
			res.SoldOut++ // still reloading when the drop's time was up
		default:
			res.Unfinished++
		}
	}
	return res
}

// Lasted returns how long a drop's stock lasted, and whether it sold out:
// from starts_at to the last order's created_at (orderd's clock), or, when
// the audit did not run, from T0 to the answer that took the last unit.
func (res *Result) Lasted() (time.Duration, bool) {
	if res.Drop == nil || len(res.SoldOut) == 0 {
		return 0, false
	}
	if a := res.Audit; a != nil && a.Window != nil && !a.Window.Last.IsZero() {
		return a.Window.Last.Sub(a.Window.StartsAt), true
	}
	return time.Duration((res.SoldOut[0].At - res.Drop.Lead) * float64(time.Second)), true
}
