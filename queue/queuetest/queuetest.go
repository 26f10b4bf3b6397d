// Package queuetest is the one conformance suite that every queue.Store runs
// (the way locktest serves the locks): the pre-queue's shuffle, FIFO after
// the start, one place per user, the admission bound under concurrency,
// single use, expiry of admissions and idle tickets, the sold-out broadcast,
// the end, a store reopened over the same state, and hostile input that must
// change nothing. Time comes from a fake clock; nothing sleeps.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flashorder/flashorder/internal/testkit/testenv"
	"github.com/flashorder/flashorder/queue"
)

// Timings of the stores under test.
const (
	Idle = 10 * time.Second
	TTL  = 20 * time.Second
)

// Backend describes a queue.Store to the suite.
type Backend struct {
	// New returns a store with opts. When Shared is set, every store New
	// returns in one test sees the same queues, as orderd instances on one
	// Redis do.
	New func(t testing.TB, opts queue.Options) queue.Store
	// Shared reports that the stores of New share their state.
	Shared bool
}

// Run runs the suite against b. When the suite ends, every goroutine that
// it or the stores started must be gone.
func Run(t *testing.T, b Backend) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	t.Run("PreQueueShuffle", func(t *testing.T) { testShuffle(t, b) })
	t.Run("FIFOAfterStart", func(t *testing.T) { testFIFO(t, b) })
	t.Run("AdmissionNumbers", func(t *testing.T) { testNumbers(t, b) })
	t.Run("OnePlacePerUser", func(t *testing.T) { testOnePlace(t, b) })
	t.Run("AdmissionBound", func(t *testing.T) { testBound(t, b) })
	t.Run("SingleUse", func(t *testing.T) { testSingleUse(t, b) })
	t.Run("StaleAdmit", func(t *testing.T) { testStaleAdmit(t, b) })
	t.Run("ExpiredAdmissionGivesPlaceBack", func(t *testing.T) { testAdmissionExpiry(t, b) })
	t.Run("IdleTicketsLeave", func(t *testing.T) { testIdle(t, b) })
	t.Run("Touch", func(t *testing.T) { testTouch(t, b) })
	t.Run("SkewedClocks", func(t *testing.T) { testSkew(t, b) })
	t.Run("SoldOutBroadcast", func(t *testing.T) { testSoldOut(t, b) })
	t.Run("End", func(t *testing.T) { testEnd(t, b) })
	t.Run("Reopen", func(t *testing.T) { testReopen(t, b) })
	t.Run("Hostile", func(t *testing.T) { testHostile(t, b) })
}

// t0 is the suite's epoch; queues start at t0 unless a test says otherwise.
var t0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

var ctx = context.Background()

func newStore(t testing.TB, b Backend) queue.Store {
	t.Helper()
	return b.New(t, queue.Options{IdleTimeout: Idle, AdmissionTTL: TTL})
}

// storesOf returns two stores on one state when the backend shares it, else
// one.
func storesOf(t testing.TB, b Backend) []queue.Store {
	t.Helper()
	stores := []queue.Store{newStore(t, b)}
	if b.Shared {
		stores = append(stores, newStore(t, b))
	}
	return stores
}

// wantStats checks q's counters.
func wantStats(t testing.TB, s queue.Store, q string, now time.Time, waiting, outstanding, used int) {
	t.Helper()
	if st := stats(t, s, q, now); st.Waiting != waiting || st.Outstanding != outstanding || st.Used != used {
		t.Fatalf("stats of %s %+v, want %d waiting, %d outstanding, %d used", q, st, waiting, outstanding, used)
	}
}

// queueID returns a queue id no other test uses, a sale's or a product's,
// so that runs sharing a Redis never meet.
func queueID(name string) string {
	if len(name)%2 == 0 {
		return queue.SaleQueue(testenv.Unique(name))
	}
	return queue.ProductQueue(testenv.Unique(name))
}

func join(t testing.TB, s queue.Store, q, user string, start, now time.Time) queue.Ticket {
	t.Helper()
	tk, err := s.Join(ctx, q, user, start, now)
	if err != nil {
		t.Fatalf("join %s to %s: %v", user, q, err)
	}
	if tk.QueueID != q || tk.UserID != user {
		t.Fatalf("join %s to %s: ticket %+v", user, q, tk)
	}
	return tk
}

func poll(t testing.TB, s queue.Store, id string, now time.Time) queue.Ticket {
	t.Helper()
	tk, err := s.Poll(ctx, id, now)
	return must(t, tk, err, "poll "+id)
}

func admit(t testing.TB, s queue.Store, q string, stock int, factor float64, now time.Time) []queue.Admission {
	t.Helper()
	a, err := s.Admit(ctx, q, stock, factor, -1, now)
	return must(t, a, err, "admit in "+q)
}

func stats(t testing.TB, s queue.Store, q string, now time.Time) queue.Stats {
	t.Helper()
	st, err := s.Stats(ctx, q, now)
	return must(t, st, err, "stats of "+q)
}

// must returns v, or fails t with what and err.
func must[T any](t testing.TB, v T, err error, what string) T {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func wantStatus(t testing.TB, tk queue.Ticket, st queue.Status, pos int) {
	t.Helper()
	if tk.Status != st || tk.Position != pos {
		t.Fatalf("ticket %s of %s: %s at %d, want %s at %d", tk.ID, tk.UserID, tk.Status, tk.Position, st, pos)
	}
}

func admittedUsers(as []queue.Admission) []string {
	var u []string
	for _, a := range as {
		u = append(u, a.UserID)
	}
	return u
}

func users(prefix string, n int) []string {
	u := make([]string, n)
	for i := range u {
		u[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return u
}

// testShuffle joins ten users before the start, at different times, and
// checks after the start that their positions are a permutation of 1..10
// before everyone who came later; over 50 queues the orders are not all the
// same (all equal by chance: (1/10!)^49).
func testShuffle(t *testing.T, b Backend) {
	s := newStore(t, b)
	start := t0.Add(time.Minute)
	pre := users("early", 10)
	seen := map[string]bool{}
	for run := range 50 {
		q := queueID("shuffle")
		ids := make([]string, len(pre))
		for i, u := range pre {
			// Arrivals spread over the last seconds before the start, within
			// the idle timeout so that nobody needs to poll.
			tk := join(t, s, q, u, start, start.Add(-time.Duration(len(pre)-i)*500*time.Millisecond))
			if tk.Status != queue.StatusWaiting || !tk.PreQueue || tk.Position != 0 {
				t.Fatalf("before the start: %+v", tk)
			}
			ids[i] = tk.ID
		}
		if a := admit(t, s, q, 100, 1, start.Add(-time.Second)); len(a) != 0 {
			t.Fatalf("admitted before the start: %v", admittedUsers(a))
		}
		late := join(t, s, q, "late-1", start, start)
		later := join(t, s, q, "late-2", start, start.Add(time.Second))
		wantStatus(t, late, queue.StatusWaiting, len(pre)+1)
		wantStatus(t, later, queue.StatusWaiting, len(pre)+2)
		order := make([]string, len(pre))
		for i, id := range ids {
			tk := poll(t, s, id, start.Add(time.Second))
			if tk.Status != queue.StatusWaiting || tk.PreQueue || tk.Position < 1 || tk.Position > len(pre) || order[tk.Position-1] != "" {
				t.Fatalf("run %d: pre-queue ticket %d after the start: %+v (order so far %v)", run, i, tk, order)
			}
			order[tk.Position-1] = pre[i]
		}
		got := admittedUsers(admit(t, s, q, 12, 1, start.Add(time.Second)))
		if want := append(slices.Clone(order), "late-1", "late-2"); !slices.Equal(got, want) {
			t.Fatalf("run %d: admitted %v, want %v", run, got, want)
		}
		seen[fmt.Sprint(order)] = true
	}
	if len(seen) < 2 {
		t.Fatalf("50 pre-queues, all in one order: %v", seen)
	}
}

// testFIFO checks that after the start places go in arrival order, and
// admissions too.
func testFIFO(t *testing.T, b Backend) {
	s := newStore(t, b)
	q := queueID("fifo")
	us := users("u", 20)
	for i, u := range us {
		wantStatus(t, join(t, s, q, u, t0, t0.Add(time.Duration(i)*100*time.Millisecond)), queue.StatusWaiting, i+1)
	}
	now := t0.Add(3 * time.Second)
	if got := admittedUsers(admit(t, s, q, 5, 1, now)); !slices.Equal(got, us[:5]) {
		t.Fatalf("admitted %v, want %v", got, us[:5])
	}
	if got := admittedUsers(admit(t, s, q, 5, 2, now)); !slices.Equal(got, us[5:10]) {
		t.Fatalf("admitted %v, want %v", got, us[5:10])
	}
	tk := join(t, s, q, us[12], t0, now)
	wantStatus(t, tk, queue.StatusWaiting, 3)
	wantStats(t, s, q, now, 10, 10, 0)
}

// testNumbers checks that admissions are numbered 1, 2, ... in the order
// the line was admitted, across rounds and stores (when they share state),
// that polls and Use show a ticket's number, and that the place a lapsed
// admission gives back is admitted under a new number.
func testNumbers(t *testing.T, b Backend) {
	stores := storesOf(t, b)
	q := queueID("numbers")
	us := users("n", 8)
	tickets := make([]queue.Ticket, len(us))
	for i, u := range us {
		tickets[i] = join(t, stores[i%len(stores)], q, u, t0, t0.Add(time.Duration(i)*time.Millisecond))
	}
	now := t0.Add(time.Second)
	var got []int64
	for i, stock := range []int{3, 5} { // two rounds, on two stores when shared
		for _, a := range admit(t, stores[i%len(stores)], q, stock, 1, now) {
			got = append(got, a.Number)
		}
	}
	if !slices.Equal(got, []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("admission numbers %v, want 1..5", got)
	}
	for i, tk := range tickets[:5] {
		if p := poll(t, stores[len(stores)-1], tk.ID, now); p.Admission == nil || p.Admission.Number != int64(i+1) {
			t.Fatalf("ticket %d polls %+v, want admission number %d", i, p.Admission, i+1)
		}
	}
	if p := poll(t, stores[0], tickets[5].ID, now); p.Status != queue.StatusWaiting || p.Admission != nil {
		t.Fatalf("waiting ticket polls %+v", p)
	}
	a, err := stores[0].Use(ctx, tickets[1].ID, now)
	if err != nil || a.Number != 2 {
		t.Fatalf("use: %+v, %v; want number 2", a, err)
	}
	// The four unused admissions lapse while the rest keep polling; their
	// places go to the next in line, under the numbers that follow.
	later := now.Add(TTL)
	for at := now; !at.After(later); at = at.Add(Idle / 2) {
		for _, tk := range tickets[5:] {
			poll(t, stores[0], tk.ID, at)
		}
	}
	as := admit(t, stores[0], q, 4, 1, later)
	if got := admittedUsers(as); !slices.Equal(got, us[5:]) || as[0].Number != 6 || as[2].Number != 8 {
		t.Fatalf("after the lapse admitted %+v, want %v numbered 6..8", as, us[5:])
	}
}

// testOnePlace joins one user 50 times at once (on two stores when they
// share state): one ticket, one place.
func testOnePlace(t *testing.T, b Backend) {
	stores := storesOf(t, b)
	for _, start := range []time.Time{t0, t0.Add(time.Hour)} {
		q := queueID("one")
		ids := make([]string, 50)
		errs := make([]error, 50)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Go(func() {
				tk, err := stores[i%len(stores)].Join(ctx, q, "same-user", start, t0)
				ids[i], errs[i] = tk.ID, err
			})
		}
		wg.Wait()
		for i := range ids {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Fatalf("join %d: %q, %v; join 0: %q", i, ids[i], errs[i], ids[0])
			}
		}
		if st := stats(t, stores[0], q, t0); st.Waiting != 1 {
			t.Fatalf("stats %+v, want one waiting", st)
		}
	}
}

// testBound runs goroutines that admit and use admissions at once (on two
// stores when they share state); the stock model is the database's: a use
// sells one unit. After every step, outstanding admissions stay within
// AdmitLimit(stock left, factor) when admitted, so that sold + outstanding <=
// stock x factor after every step.
func testBound(t *testing.T, b Backend) {
	stores := storesOf(t, b)
	const (
		stock   = 30
		factor  = 1.5
		buyers  = 120
		workers = 8
	)
	q := queueID("bound")
	for _, u := range users("b", buyers) {
		join(t, stores[0], q, u, t0, t0)
	}
	var (
		model     sync.RWMutex // readers admit, the writer sells
		left      = stock
		sold      int
		poolMu    sync.Mutex
		pool      []queue.Admission
		admitted  = map[string]bool{}
		errs      = make(chan error, workers)
		checkLock = func(s queue.Store) error {
			st, err := s.Stats(ctx, q, t0)
			if err != nil {
				return err
			}
			if float64(sold+st.Outstanding) > stock*factor || st.Used != sold {
				return fmt.Errorf("bound broken: %+v with %d left, %d sold", st, left, sold)
			}
			return nil
		}
	)
	step := func(w, i int) error {
		s := stores[max(w+i, 0)%len(stores)]
		if (w+i)%3 != 0 || w < 0 {
			model.RLock()
			defer model.RUnlock()
			as, err := s.Admit(ctx, q, left, factor, -1, t0)
			if err != nil {
				return err
			}
			poolMu.Lock()
			for _, a := range as {
				if admitted[a.TicketID] {
					poolMu.Unlock()
					return fmt.Errorf("ticket %s admitted twice", a.TicketID)
				}
				admitted[a.TicketID] = true
			}
			pool = append(pool, as...)
			poolMu.Unlock()
			return checkLock(s)
		}
		poolMu.Lock()
		if len(pool) == 0 {
			poolMu.Unlock()
			return nil
		}
		a := pool[0]
		pool = pool[1:]
		poolMu.Unlock()
		model.Lock()
		defer model.Unlock()
		if left == 0 {
			return nil // the database refuses the order: sold out
		}
		if _, err := s.Use(ctx, a.TicketID, t0); err != nil {
			return fmt.Errorf("use %s: %w", a.TicketID, err)
		}
		left--
		sold++
		return checkLock(s)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range 60 {
				if err := step(w, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Sell the rest one step after the other, so that the end does not hang
	// on the schedule: the bound must never keep the stock from selling.
	for n := 0; left > 0; n++ {
		if n > 2*stock {
			t.Fatalf("%d left, %d sold: admission stalled", left, sold)
		}
		if err := step(-1, 0); err != nil {
			t.Fatal(err)
		}
		if err := step(0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if sold != stock || left != 0 {
		t.Fatalf("%d sold, %d left: want the stock sold exactly", sold, left)
	}
	if err := checkLock(stores[0]); err != nil {
		t.Fatal(err)
	}
}

// testSingleUse uses one admission from 20 goroutines: one wins, the others
// read ErrAdmissionUsed; using a waiting ticket is ErrNotAdmitted.
func testSingleUse(t *testing.T, b Backend) {
	stores := storesOf(t, b)
	q := queueID("once")
	a := join(t, stores[0], q, "buyer", t0, t0)
	w := join(t, stores[0], q, "waiter", t0, t0)
	if got := admittedUsers(admit(t, stores[0], q, 1, 1, t0)); !slices.Equal(got, []string{"buyer"}) {
		t.Fatalf("admitted %v", got)
	}
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() { _, errs[i] = stores[i%len(stores)].Use(ctx, a.ID, t0) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, queue.ErrAdmissionUsed):
			t.Fatalf("second use: %v, want ErrAdmissionUsed", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d uses succeeded, want 1", won)
	}
	if _, err := stores[0].Use(ctx, w.ID, t0); !errors.Is(err, queue.ErrNotAdmitted) {
		t.Fatalf("use of a waiting ticket: %v, want ErrNotAdmitted", err)
	}
	tk := poll(t, stores[0], a.ID, t0)
	if tk.Status != queue.StatusAdmitted || tk.Admission == nil || !tk.Admission.Used {
		t.Fatalf("used ticket polls %+v", tk)
	}
	wantStats(t, stores[0], q, t0, 1, 0, 1)
}

// testStaleAdmit checks Admit's guard against a stock read older than an
// admission's use: an order that took stock and then used its admission
// between the caller's read of Used and its Admit would otherwise be
// counted neither in the stock left nor in the admissions outstanding.
func testStaleAdmit(t *testing.T, b Backend) {
	stores := storesOf(t, b)
	q := queueID("stale")
	a := join(t, stores[0], q, "buyer", t0, t0)
	join(t, stores[0], q, "next", t0, t0)
	seen := stats(t, stores[0], q, t0).Used
	as, err := stores[0].Admit(ctx, q, 1, 1, seen, t0)
	if err != nil || len(as) != 1 || as[0].TicketID != a.ID {
		t.Fatalf("admit with a fresh read: %v, %v", as, err)
	}
	if _, err := stores[len(stores)-1].Use(ctx, a.ID, t0); err != nil {
		t.Fatal(err)
	}
	// The stock read of seen still counts the unit the order took.
	if as, err := stores[len(stores)-1].Admit(ctx, q, 1, 1, seen, t0); !errors.Is(err, queue.ErrStale) || len(as) != 0 {
		t.Fatalf("admit with a stale read: %v, %v, want ErrStale", as, err)
	}
	wantStats(t, stores[0], q, t0, 1, 0, 1)
	seen = stats(t, stores[0], q, t0).Used
	if as, err := stores[0].Admit(ctx, q, 1, 1, seen, t0); err != nil || len(as) != 1 {
		t.Fatalf("admit with a read after the use: %v, %v", as, err)
	}
}

// testAdmissionExpiry lets an admission lapse: the ticket reads expired, its
// use is refused, and its place goes to the next buyer.
func testAdmissionExpiry(t *testing.T, b Backend) {
	s := newStore(t, b)
	q := queueID("lapse")
	a := join(t, s, q, "a", t0, t0)
	bb := join(t, s, q, "b", t0, t0)
	as := admit(t, s, q, 1, 1, t0)
	if got := admittedUsers(as); !slices.Equal(got, []string{"a"}) || !as[0].ExpiresAt.Equal(t0.Add(TTL)) {
		t.Fatalf("admitted %+v", as)
	}
	if got := admit(t, s, q, 1, 1, t0.Add(time.Second)); len(got) != 0 {
		t.Fatalf("bound 1 admitted a second: %v", admittedUsers(got))
	}
	now := t0
	for now.Before(t0.Add(TTL)) { // b keeps polling
		now = now.Add(Idle / 2)
		poll(t, s, bb.ID, now)
	}
	if tk := poll(t, s, a.ID, now); tk.Status != queue.StatusExpired {
		t.Fatalf("lapsed admission polls %+v", tk)
	}
	if _, err := s.Use(ctx, a.ID, now); !errors.Is(err, queue.ErrAdmissionExpired) {
		t.Fatalf("use of a lapsed admission: %v", err)
	}
	if got := admittedUsers(admit(t, s, q, 1, 1, now)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after the lapse admitted %v, want b", got)
	}
	wantStats(t, s, q, now, 0, 1, 0)
	// The lapsed user may join again, at the back.
	again := join(t, s, q, "a", t0, now)
	if again.ID == a.ID || again.Status != queue.StatusWaiting || again.Position != 1 {
		t.Fatalf("rejoin after the lapse: %+v", again)
	}
}

// testIdle stops polling one ticket: after the idle timeout it leaves, the
// others move up, admission skips it.
func testIdle(t *testing.T, b Backend) {
	s := newStore(t, b)
	q := queueID("idle")
	start := t0.Add(time.Minute)
	// In the pre-queue too: a ticket that stops polling before the start leaves.
	gone := join(t, s, q, "gone-early", start, t0)
	x := join(t, s, q, "x", start, t0)
	now := t0
	for now.Before(start) {
		now = now.Add(Idle)
		poll(t, s, x.ID, now)
	}
	a := join(t, s, q, "a", start, now)
	bb := join(t, s, q, "b", start, now)
	c := join(t, s, q, "c", start, now)
	wantStatus(t, poll(t, s, gone.ID, now), queue.StatusExpired, 0)
	wantStatus(t, a, queue.StatusWaiting, 2)
	now = now.Add(Idle)
	for _, id := range []string{x.ID, bb.ID, c.ID} {
		poll(t, s, id, now)
	}
	now = now.Add(time.Second)
	if st := stats(t, s, q, now); st.Waiting != 3 {
		t.Fatalf("stats %+v, want 3 waiting", st)
	}
	wantStatus(t, poll(t, s, a.ID, now), queue.StatusExpired, 0)
	wantStatus(t, poll(t, s, c.ID, now), queue.StatusWaiting, 3)
	if got := admittedUsers(admit(t, s, q, 3, 1, now)); !slices.Equal(got, []string{"x", "b", "c"}) {
		t.Fatalf("admitted %v, want x b c", got)
	}
}

// testTouch keeps pre-queue tickets alive by Touch alone, as a room does for
// the polls it answered from memory (each touch dated a moment before it
// reaches the store), and checks what Touch reports gone: a ticket that left
// idle, an admitted one, one that is not a ticket.
func testTouch(t *testing.T, b Backend) {
	stores := storesOf(t, b)
	s := stores[0]
	q := queueID("touch")
	start := t0.Add(time.Minute)
	kept := join(t, s, q, "kept", start, t0)
	idle := join(t, s, q, "idle", start, t0)
	// late's touch is dated no later than its join: it cannot keep a
	// ticket that the Touch's own time finds idle, and the ticket is gone
	// in that very call.
	late := join(t, s, q, "late", start, t0)
	unknown := queue.NewTicketID(q)
	now := t0
	for i := 0; now.Before(start); i++ {
		now = now.Add(Idle / 2)
		touches := []queue.Touch{{TicketID: kept.ID, At: now.Add(-time.Second)}}
		if i == 0 {
			touches = append(touches, queue.Touch{TicketID: late.ID, At: t0})
		}
		if i == 4 { // by now idle left: past the timeout untouched
			touches = append(touches, queue.Touch{TicketID: idle.ID, At: now}, queue.Touch{TicketID: unknown, At: now})
		}
		// Dated 1 s back, the touch still counts at now + Idle - 1 s:
		// the store applies it before its idle timeout.
		gone, err := stores[i%len(stores)].Touch(ctx, q, touches, now.Add(Idle-time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		switch i {
		case 0:
			want = []string{late.ID}
		case 4:
			want = []string{idle.ID, unknown}
		}
		slices.Sort(gone)
		slices.Sort(want)
		if !slices.Equal(gone, want) {
			t.Fatalf("touch %d gone %v, want %v", i, gone, want)
		}
	}
	wantStatus(t, poll(t, s, idle.ID, now), queue.StatusExpired, 0)
	wantStatus(t, poll(t, s, kept.ID, now), queue.StatusWaiting, 1)
	if got := admittedUsers(admit(t, s, q, 1, 1, now)); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("admitted %v, want kept", got)
	}
	if gone, err := s.Touch(ctx, q, []queue.Touch{{TicketID: kept.ID, At: now}}, now); err != nil || !slices.Equal(gone, []string{kept.ID}) {
		t.Fatalf("touch of an admitted ticket: gone %v, %v", gone, err)
	}
	if tk := poll(t, s, kept.ID, now); tk.Status != queue.StatusAdmitted {
		t.Fatalf("touch changed an admitted ticket: %+v", tk)
	}
	if _, err := s.Touch(ctx, "nonsense", []queue.Touch{{TicketID: kept.ID, At: now}}, now); !errors.Is(err, queue.ErrInvalid) {
		t.Fatalf("touch of a bad queue id: %v", err)
	}
}

// testSkew has instances whose clocks differ by seconds: a ticket that
// timed out leaves even when a later-seen one stands before it, and an
// admission lapses at its own expiry.
func testSkew(t *testing.T, b Backend) {
	s := newStore(t, b)
	q := queueID("skew")
	ahead := join(t, s, q, "ahead", t0, t0.Add(5*time.Second))
	behind := join(t, s, q, "behind", t0, t0)
	now := t0.Add(Idle + 2*time.Second)
	wantStatus(t, poll(t, s, behind.ID, now), queue.StatusExpired, 0)
	wantStatus(t, poll(t, s, ahead.ID, now), queue.StatusWaiting, 1)
	if _, err := s.Use(ctx, behind.ID, now); !errors.Is(err, queue.ErrNotAdmitted) {
		t.Fatalf("use of a ticket that left: %v", err)
	}
	as := admit(t, s, q, 1, 1, now.Add(time.Second))
	if len(as) != 1 || as[0].TicketID != ahead.ID {
		t.Fatalf("admitted %+v", as)
	}
	if _, err := s.Use(ctx, ahead.ID, as[0].ExpiresAt); !errors.Is(err, queue.ErrAdmissionExpired) {
		t.Fatalf("use at the admission's expiry: %v", err)
	}
	wantStats(t, s, q, as[0].ExpiresAt, 0, 0, 0)
}

// testSoldOut marks a queue sold out: every waiting ticket reads sold_out at
// once and nobody is admitted; stock coming back resumes admission.
func testSoldOut(t *testing.T, b Backend) {
	s := newStore(t, b)
	q := queueID("soldout")
	var ids []string
	for _, u := range users("w", 5) {
		ids = append(ids, join(t, s, q, u, t0, t0).ID)
	}
	if err := s.SoldOut(ctx, q, t0); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		wantStatus(t, poll(t, s, id, t0), queue.StatusSoldOut, i+1)
	}
	if got := admit(t, s, q, 0, 1.5, t0); len(got) != 0 {
		t.Fatalf("admitted with no stock: %v", admittedUsers(got))
	}
	if st := stats(t, s, q, t0); !st.SoldOut || st.Waiting != 5 {
		t.Fatalf("stats %+v", st)
	}
	if got := admittedUsers(admit(t, s, q, 2, 1, t0)); !slices.Equal(got, []string{"w-00", "w-01"}) {
		t.Fatalf("admitted %v after the restock", got)
	}
	wantStatus(t, poll(t, s, ids[2], t0), queue.StatusWaiting, 1)
}

// testEnd ends a queue: waiting tickets read ended, joins fail, nobody is
// admitted.
func testEnd(t *testing.T, b Backend) {
	s := newStore(t, b)
	q := queueID("end")
	tk := join(t, s, q, "u", t0, t0)
	if err := s.End(ctx, q, t0); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, poll(t, s, tk.ID, t0), queue.StatusEnded, 1)
	if _, err := s.Join(ctx, q, "v", t0, t0); !errors.Is(err, queue.ErrEnded) {
		t.Fatalf("join after the end: %v", err)
	}
	if got := admit(t, s, q, 10, 1, t0); len(got) != 0 {
		t.Fatalf("admitted after the end: %v", admittedUsers(got))
	}
}

// testReopen opens a second store over the first one's state (a restarted
// instance, a new client): it sees the tickets, places and admissions.
func testReopen(t *testing.T, b Backend) {
	if !b.Shared {
		t.Skip("the store's state lives and dies with the object")
	}
	s := newStore(t, b)
	q := queueID("reopen")
	a := join(t, s, q, "a", t0, t0)
	bb := join(t, s, q, "b", t0, t0)
	c := join(t, s, q, "c", t0, t0)
	admit(t, s, q, 2, 1, t0)
	if _, err := s.Use(ctx, a.ID, t0); err != nil {
		t.Fatal(err)
	}
	r := newStore(t, b)
	if _, err := r.Use(ctx, a.ID, t0); !errors.Is(err, queue.ErrAdmissionUsed) {
		t.Fatalf("reopened: second use %v", err)
	}
	if tk := poll(t, r, bb.ID, t0); tk.Status != queue.StatusAdmitted || tk.Admission.Used {
		t.Fatalf("reopened: %+v", tk)
	}
	wantStatus(t, poll(t, r, c.ID, t0), queue.StatusWaiting, 1)
	if again := join(t, r, q, "c", t0, t0); again.ID != c.ID {
		t.Fatalf("reopened: join again gave %s, want %s", again.ID, c.ID)
	}
	wantStats(t, r, q, t0, 1, 1, 1)
}

// testHostile sends ticket ids that are not, ids of no ticket and bad ids:
// each is refused with its error and changes nothing.
func testHostile(t *testing.T, b Backend) {
	s := newStore(t, b)
	q := queueID("hostile")
	a := join(t, s, q, "a", t0, t0)
	bb := join(t, s, q, "b", t0, t0)
	admit(t, s, q, 1, 1, t0)
	before := stats(t, s, q, t0)
	unknown := queue.NewTicketID(q)
	otherQueue := queue.NewTicketID(queueID("nowhere"))
	for _, c := range []struct {
		id   string
		want error
	}{
		{"", queue.ErrMalformedTicket},
		{"nope", queue.ErrMalformedTicket},
		{q, queue.ErrMalformedTicket},
		{a.ID + "0", queue.ErrMalformedTicket},
		{a.ID[:len(a.ID)-1] + "G", queue.ErrMalformedTicket},
		{"bad sku!" + a.ID[len(q):], queue.ErrMalformedTicket},
		{"../" + a.ID, queue.ErrMalformedTicket},
		{unknown, queue.ErrUnknownTicket},
		{otherQueue, queue.ErrUnknownTicket},
	} {
		if _, err := s.Poll(ctx, c.id, t0); !errors.Is(err, c.want) {
			t.Errorf("poll %q: %v, want %v", c.id, err, c.want)
		}
		if _, err := s.Use(ctx, c.id, t0); !errors.Is(err, c.want) {
			t.Errorf("use %q: %v, want %v", c.id, err, c.want)
		}
	}
	for _, c := range []struct{ q, user string }{{"", "u"}, {"plain-sku", "u"}, {"sale:bad sku!", "u"}, {q, ""}, {q, "a b"}, {q + "~x", "u"}} {
		if _, err := s.Join(ctx, c.q, c.user, t0, t0); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("join %q to %q: %v, want ErrInvalid", c.user, c.q, err)
		}
	}
	if _, err := s.Use(ctx, bb.ID, t0); !errors.Is(err, queue.ErrNotAdmitted) {
		t.Errorf("use of a waiting ticket: %v", err)
	}
	for _, bad := range []string{"", "plain-sku", "sku:bad sku!", q + "~x", "{q:x}"} {
		if _, err := s.Admit(ctx, bad, 10, 1, -1, t0); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("admit in %q: %v, want ErrInvalid", bad, err)
		}
		if _, err := s.Stats(ctx, bad, t0); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("stats of %q: %v, want ErrInvalid", bad, err)
		}
		if err := s.SoldOut(ctx, bad, t0); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("sold out %q: %v, want ErrInvalid", bad, err)
		}
		if err := s.End(ctx, bad, t0); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("end %q: %v, want ErrInvalid", bad, err)
		}
	}
	if after := stats(t, s, q, t0); after != before {
		t.Fatalf("stats changed: %+v, then %+v", before, after)
	}
	if tk := poll(t, s, a.ID, t0); tk.Status != queue.StatusAdmitted || tk.Admission.Used {
		t.Fatalf("admitted ticket after the refusals: %+v", tk)
	}
	wantStatus(t, poll(t, s, bb.ID, t0), queue.StatusWaiting, 1)
}
