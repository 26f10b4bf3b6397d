package loadtest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	orderhttp "github.com/flashorder/flashorder/http"
)

// sliver is the length under which the last interval of a run (what came
// after the last full second) is kept in the results but not charted or
// printed: its rates would be noise.
const sliver = 0.25

// Interval is one second (or the last, shorter, part) of a run.
type Interval struct {
	// T is the end of the interval in seconds since the start of the run.
	T float64 `json:"t"`
	// Seconds is the interval's length.
	Seconds float64 `json:"seconds"`
	// Warmup marks intervals before the measurement started.
	Warmup       bool    `json:"warmup,omitempty"`
	Answers      int64   `json:"answers"`
	Orders       int64   `json:"orders"`
	Errors       int64   `json:"errors"`
	AnswersPerS  float64 `json:"answers_per_s"`
	OrdersPerS   float64 `json:"orders_per_s"`
	P50          float64 `json:"p50_ms"`
	P90          float64 `json:"p90_ms"`
	P99          float64 `json:"p99_ms"`
	Max          float64 `json:"max_ms"`
	Late         int64   `json:"late,omitempty"`
	StockLeft    int64   `json:"stock_left"`
	StockIsGuess bool    `json:"stock_is_guess,omitempty"`
}

// Result is the outcome of a run.
type Result struct {
	Label   string    `json:"label,omitempty"`
	RunID   string    `json:"run_id"`
	Config  Config    `json:"config"`
	Started time.Time `json:"started"`
	// Mode is "closed" or "open".
	Mode string `json:"mode"`
	// Seconds is the measured time (after warmup).
	Seconds float64 `json:"seconds"`
	// Requests is the number of answers to requests sent after the warmup.
	Requests int64 `json:"requests"`
	// OfferedRate is the open loop's target rate; in a closed loop it equals
	// AchievedRate, since the clients send only when answered.
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	// Orders is the number of new orders (201s that were not replays).
	Orders       int64         `json:"orders"`
	OrdersPerSec float64       `json:"orders_per_s"`
	Errors       int64         `json:"errors"`
	Answers      []AnswerCount `json:"answers"`
	// Late is the number of open-loop requests sent later than the late
	// threshold; NotSent the number that were due but never sent.
	Late     int64        `json:"late"`
	NotSent  int64        `json:"not_sent"`
	MaxLagMs float64      `json:"max_lag_ms"`
	Latency  Percentiles  `json:"latency"`
	Dist     []DistPoint  `json:"distribution"`
	Series   []Interval   `json:"series"`
	Audit    *AuditReport `json:"audit,omitempty"`

	workers []workerState
}

// collector drains the shards once a second into the time series, and prints
// progress.
type collector struct {
	r     *runner
	admin *orderhttp.Client
	// total is every answer to a request sent after the warmup.
	total  counts
	seen   map[Answer]int64 // every answer, for progress
	series []Interval
	last   time.Time
	cur    counts // scratch for one interval
	curM   counts // scratch for its measured part
	stock  atomic.Int64
	guess  atomic.Bool
}

func newCollector(r *runner, admin *orderhttp.Client) *collector {
	th := r.cfg.LateThreshold
	c := &collector{r: r, admin: admin, total: newCounts(th), seen: map[Answer]int64{}, last: r.start,
		cur: newCounts(th), curM: newCounts(th)}
	c.stock.Store(-1)
	return c
}

// run ticks once a second (and once exactly when the warmup ends) until
// loadDone is closed.
func (c *collector) run(ctx context.Context, loadDone <-chan struct{}) {
	if !c.r.cfg.NoServer {
		polled := make(chan struct{})
		go func() { c.pollStock(ctx, loadDone); close(polled) }()
		defer func() { <-polled }()
	}
	for {
		next := c.last.Add(time.Second)
		if c.last.Before(c.r.measureStart) && c.r.measureStart.Before(next) {
			next = c.r.measureStart
		}
		t := time.NewTimer(time.Until(next))
		select {
		case now := <-t.C:
			c.tick(now, false)
		case <-loadDone:
			t.Stop()
			return
		}
	}
}

// pollStock keeps the remaining stock of the scenario's products for the
// progress line: read from the server for up to 8 SKUs, estimated from the
// client's 201s beyond that or when the server does not answer within 0.9s.
func (c *collector) pollStock(ctx context.Context, loadDone <-chan struct{}) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		var sum int64
		ok := len(c.r.skus) <= 8
		for _, sku := range c.r.skus {
			if !ok {
				break
			}
			pctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
			p, err := c.admin.Product(pctx, sku)
			cancel()
			sum += p.Stock
			ok = err == nil
		}
		if !ok {
			// Too many SKUs, or the server is too busy to answer in time:
			// estimate from the client's own 201s.
			sum = int64(len(c.r.skus)) * c.r.cfg.Scenario.Stock
			for i := range c.r.soldByClient {
				sum -= c.r.soldByClient[i].Load()
			}
		}
		c.stock.Store(sum)
		c.guess.Store(!ok)
		select {
		case <-tk.C:
		case <-loadDone:
			return
		}
	}
}

// tick closes the interval that ends at now; final marks the last one.
func (c *collector) tick(now time.Time, final bool) {
	iv := &c.cur
	iv.reset()
	c.curM.reset()
	for _, s := range c.r.shards {
		s.drain(iv, &c.curM)
	}
	c.curM.moveTo(&c.total)
	secs := now.Sub(c.last).Seconds()
	warm := c.last.Before(c.r.measureStart)
	var answers, errs int64
	for k, v := range iv.answers {
		answers += v
		if k.Status != 201 {
			errs += v
		}
		c.seen[k] += v
	}
	p := PercentilesOf(iv.hist)
	out := Interval{T: now.Sub(c.r.start).Seconds(), Seconds: secs, Warmup: warm, Answers: answers, Orders: iv.orders,
		Errors: errs, P50: p.P50, P90: p.P90, P99: p.P99, Max: p.Max, Late: iv.lateness.Late,
		StockLeft: c.stock.Load(), StockIsGuess: c.guess.Load()}
	if secs > 0 {
		out.AnswersPerS = float64(answers) / secs
		out.OrdersPerS = float64(iv.orders) / secs
	}
	c.last = now
	c.series = append(c.series, out)
	if !(final && secs < sliver && len(c.series) > 1) {
		c.progress(out)
	}
}

func (c *collector) progress(iv Interval) {
	w := c.r.cfg.Progress
	if w == nil {
		return
	}
	var b strings.Builder
	phase := ""
	if iv.Warmup {
		phase = " warmup"
	}
	fmt.Fprintf(&b, "%6.1fs%s  orders/s %7.0f  answers/s %7.0f  p99 %8.2fms", iv.T, phase, iv.OrdersPerS, iv.AnswersPerS, iv.P99)
	if iv.StockLeft >= 0 {
		approx := ""
		if iv.StockIsGuess {
			approx = "~"
		}
		fmt.Fprintf(&b, "  stock %s%d", approx, iv.StockLeft)
	}
	if errs := errorSummary(c.seen); errs != "" {
		b.WriteString("  errors: " + errs)
	}
	if c.r.cfg.Terminal {
		fmt.Fprintf(w, "\r\033[K%s", b.String())
	} else {
		fmt.Fprintln(w, b.String())
	}
}

// errorSummary lists the non-201 answers as "409 sold_out=12 0 timeout=1".
func errorSummary(m map[Answer]int64) string {
	var parts []string
	for _, ac := range sortedAnswers(m) {
		if ac.Status == 201 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%d", ac.Answer, ac.Count))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// String renders an answer as "201", "409 sold_out" or "timeout".
func (a Answer) String() string {
	switch {
	case a.Status == 0:
		return a.Code
	case a.Code == "":
		return fmt.Sprint(a.Status)
	default:
		return fmt.Sprintf("%d %s", a.Status, a.Code)
	}
}

// result closes the last interval at end and summarises the measured time.
func (c *collector) result(end time.Time) *Result {
	if end.After(c.last) {
		c.tick(end, true)
	}
	if c.r.cfg.Terminal && c.r.cfg.Progress != nil {
		fmt.Fprintln(c.r.cfg.Progress)
	}
	cfg := c.r.cfg
	t := &c.total
	var requests, errs int64
	for k, v := range t.answers {
		requests += v
		if k.Status != 201 {
			errs += v
		}
	}
	res := &Result{Label: cfg.Label, Started: c.r.start, Mode: "closed", Requests: requests, Orders: t.orders,
		Errors: errs, Answers: sortedAnswers(t.answers), Late: t.lateness.Late,
		MaxLagMs: float64(t.lateness.MaxLag.Microseconds()) / 1000,
		Latency:  PercentilesOf(t.hist), Dist: Distribution(t.hist), Series: c.series}
	measureStart := c.r.measureStart
	if end.After(measureStart) {
		res.Seconds = end.Sub(measureStart).Seconds()
		res.AchievedRate = float64(requests) / res.Seconds
		res.OrdersPerSec = float64(t.orders) / res.Seconds
	}
	res.OfferedRate = res.AchievedRate
	if cfg.Rate > 0 {
		res.Mode = "open"
		res.OfferedRate = cfg.Rate
	}
	return res
}
