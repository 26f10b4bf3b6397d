package queue

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/flashorder/flashorder"
)

// overConfirm is how long units sold plus admissions outstanding must stay
// above the bound, with no admission used meanwhile, to count as exceeded:
// longer than an admission's use may take after its order's commit.
const overConfirm = time.Second + time.Second/2

// activeFor is how long a queue stays in the admission loop after its last
// join or poll on this instance: past it nobody here waits in it.
const activeFor = 2 * DefaultIdleTimeout

// Start starts the admission loop: every Interval, each queue served here
// in the last minute is admitted against its products' stock, read fresh,
// and turned sold out or ended when its products are. Every instance runs
// one; the store keeps the bound across them.
func (r *Room) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.stop, r.done = cancel, make(chan struct{})
	r.kick = make(chan struct{}, 1)
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-r.kick:
			}
			r.AdmitAll(ctx)
		}
	}()
}

// Stop stops the admission loop and waits for it.
func (r *Room) Stop() {
	if r.stop != nil {
		r.stop()
		<-r.done
	}
}

// Kick asks the admission loop for a round now (after a sell-out, so that
// the waiting hear of it at once).
func (r *Room) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// AdmitAll runs one admission round over the queues served here; the loop
// calls it, and tests that drive time themselves.
func (r *Room) AdmitAll(ctx context.Context) {
	now := r.opts.Now()
	tctx, cancel := context.WithTimeout(ctx, max(r.opts.Interval, time.Second))
	r.pre.touch(tctx, r, now)
	cancel()
	r.active.Range(func(k, v any) bool {
		aq := v.(*activeQueue)
		if now.Sub(time.Unix(0, aq.seen.Load())) > activeFor {
			r.active.Delete(k)
			return true
		}
		if err := r.admit(ctx, aq, now); err != nil && ctx.Err() == nil {
			r.opts.Logger.Warn("waiting room: admission round failed", "queue", aq.id, "err", err)
		}
		return ctx.Err() == nil
	})
}

// admit runs one admission round of aq at now.
func (r *Room) admit(ctx context.Context, aq *activeQueue, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, max(r.opts.Interval, time.Second))
	defer cancel()
	// Used before the stock: Admit refuses if an admission was used since
	// (its order's units may be missing from the stock read and no longer
	// counted as outstanding).
	before, err := r.store.Stats(ctx, aq.id, now)
	if err != nil {
		return err
	}
	products, err := r.products(ctx, aq)
	if err != nil {
		return err
	}
	st := QueueState{QueueID: aq.id, MemoryPolls: aq.memoryPolls.Swap(0)}
	factor, open, ended := math.Inf(1), false, len(products) > 0
	var start *time.Time // the earliest start; nil when a product has none
	first := true
	for _, p := range products {
		if !p.Queued() || QueueOf(p) != aq.id {
			continue
		}
		if first || (start != nil && (p.StartsAt == nil || p.StartsAt.Before(*start))) {
			start, first = p.StartsAt, false
		}
		w := p.WindowAt(now)
		ended = ended && w == flashorder.WindowAfter
		if w == flashorder.WindowAfter {
			continue
		}
		open = open || w == flashorder.WindowOpen
		st.Stock += max(p.Stock, 0)
		st.Sold += p.Sold
		factor = min(factor, p.Factor())
	}
	switch {
	case ended:
		err = r.store.End(ctx, aq.id, now)
	case math.IsInf(factor, 1) || !open:
		// before the start, or no product left in this queue: nothing
		// to admit
	case st.Stock <= 0:
		err = r.store.SoldOut(ctx, aq.id, now)
	default:
		var adm []Admission
		adm, err = r.store.Admit(ctx, aq.id, int(min(st.Stock, math.MaxInt32)), factor, before.Used, now)
		st.Admitted = len(adm)
	}
	if errors.Is(err, ErrStale) {
		return nil // the next round reads again
	}
	if err != nil {
		return err
	}
	if st.Stats, err = r.store.Stats(ctx, aq.id, now); err != nil {
		return err
	}
	r.pre.vouch(aq, st.Stats, start, r.opts.Interval, now)
	if !math.IsInf(factor, 1) {
		st.Bound = float64(st.Stock+st.Sold) * factor
	}
	// An order between its commit and the use of its admission counts
	// twice (sold, and outstanding), for as long as the use takes (at most
	// its one-second timeout): a bound exceeded counts once it held, with
	// no admission used meanwhile, for longer than that.
	over := st.Bound > 0 && float64(st.Sold)+float64(st.Outstanding) > st.Bound
	switch {
	case !over || before.Used != aq.overUsed || aq.overSince.IsZero():
		aq.overSince, aq.overCounted = time.Time{}, false
		if over {
			aq.overSince = now
		}
	case !aq.overCounted && now.Sub(aq.overSince) > overConfirm:
		st.Exceeded, aq.overCounted = true, true
	}
	aq.overUsed = st.Used
	aq.observeUsed(st.Used, now)
	if r.opts.Observe != nil {
		r.opts.Observe(st)
	}
	return nil
}

// products reads aq's products fresh.
func (r *Room) products(ctx context.Context, aq *activeQueue) ([]*flashorder.Product, error) {
	if aq.sale != "" {
		return r.stock.SaleProducts(ctx, aq.sale)
	}
	p, err := r.stock.Product(ctx, aq.sku)
	if err != nil {
		return nil, err
	}
	return []*flashorder.Product{p}, nil
}

// observeUsed updates the queue's smoothed rate of admissions used, from
// the store's count at now.
func (aq *activeQueue) observeUsed(used int, now time.Time) {
	if !aq.lastAt.IsZero() && used >= aq.lastUsed {
		if dt := now.Sub(aq.lastAt).Seconds(); dt > 0 {
			rate := float64(used-aq.lastUsed) / dt
			old := fromBits(aq.usedRate.Load())
			if old > 0 {
				rate = 0.8*old + 0.2*rate
			}
			aq.usedRate.Store(math.Float64bits(rate))
		}
	}
	aq.lastUsed, aq.lastAt = used, now
}

func fromBits(b uint64) float64 { return math.Float64frombits(b) }
