package loadtest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	orderhttp "github.com/flashorder/flashorder/http"
)

// sliver is the share of a bucket under which the last interval of a run
// (what came after the last full bucket) is kept in the results but not
// charted or printed: its rates would be noise.
const sliver = 0.25

// maxChartSKUs is how many SKUs the time series follows one by one (stock
// left per SKU); beyond it only the total is kept.
const maxChartSKUs = 8

// Interval is one bucket of a run (Config.Bucket long, or as long as the
// run's length so far calls for; the last one may be shorter).
type Interval struct {
	// T is the end of the interval in seconds since the start of the run.
	T float64 `json:"t"`
	// Seconds is the interval's length.
	Seconds float64 `json:"seconds"`
	// Warmup marks intervals before the measurement started.
	Warmup  bool  `json:"warmup,omitempty"`
	Answers int64 `json:"answers"`
	Orders  int64 `json:"orders"`
	// Errors are the 5xx and transport failures; Refused the business
	// refusals (sold_out, limit_exceeded), which are not errors.
	Errors      int64   `json:"errors"`
	Refused     int64   `json:"refused"`
	AnswersPerS float64 `json:"answers_per_s"`
	OrdersPerS  float64 `json:"orders_per_s"`
	P50         float64 `json:"p50_ms"`
	P90         float64 `json:"p90_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
	Late        int64   `json:"late,omitempty"`
	// StockLeft is the total stock left as last read from the server (or
	// estimated: StockIsGuess); -1 when not known.
	StockLeft    int64 `json:"stock_left"`
	StockIsGuess bool  `json:"stock_is_guess,omitempty"`
	// Codes counts the interval's answers by kind ("201", "409 sold_out",
	// "timeout").
	Codes map[string]int64 `json:"codes,omitempty"`
	// SKUStock is the stock left of each of the first 8 SKUs at the end of
	// the interval, as the client's own 201s tell it (exact unless
	// requests had unknown outcomes).
	SKUStock []int64 `json:"sku_stock,omitempty"`
	// Target is, with stages, the clients (closed loop) or the rate (open
	// loop) the ramp had reached at the end of the interval.
	Target float64 `json:"target,omitempty"`
	// Pages counts a drop's product page answers in the interval, with
	// their rate, latency percentiles (from the actual send: orderd's time)
	// and errors (5xx and transport failures). Orders are all the rest.
	Pages      int64   `json:"pages,omitempty"`
	PagesPerS  float64 `json:"pages_per_s,omitempty"`
	PageP50    float64 `json:"page_p50_ms,omitempty"`
	PageP99    float64 `json:"page_p99_ms,omitempty"`
	PageErrors int64   `json:"page_errors,omitempty"`
}

// PageStats sums up a drop's product page: the GETs answered, how, at what
// peak rate (the busiest bucket's) and how fast.
type PageStats struct {
	Requests    int64       `json:"requests"`
	NotModified int64       `json:"not_modified"`
	Errors      int64       `json:"errors"`
	Other       int64       `json:"other"`
	PeakPerS    float64     `json:"peak_per_s"`
	Latency     Percentiles `json:"latency"`
}

// SoldOut is the moment one SKU's stock ran out, as the client saw it: the
// answer to the order that took its last unit.
type SoldOut struct {
	SKU string `json:"sku"`
	// At is in seconds since the start of the run.
	At float64 `json:"at"`
}

// Result is the outcome of a run.
type Result struct {
	Label   string    `json:"label,omitempty"`
	RunID   string    `json:"run_id"`
	Config  Config    `json:"config"`
	Started time.Time `json:"started"`
	// Mode is "closed", "open" or "drop".
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
	Orders       int64   `json:"orders"`
	OrdersPerSec float64 `json:"orders_per_s"`
	// Errors are the 5xx answers and transport failures (no answer);
	// Refused the business refusals (409 sold_out and limit_exceeded),
	// which are the sale working, not errors.
	Errors  int64         `json:"errors"`
	Refused int64         `json:"refused"`
	Answers []AnswerCount `json:"answers"`
	// Late is the number of open-loop requests sent later than the late
	// threshold; NotSent the number that were due but never sent.
	Late     int64       `json:"late"`
	NotSent  int64       `json:"not_sent"`
	MaxLagMs float64     `json:"max_lag_ms"`
	Latency  Percentiles `json:"latency"`
	Dist     []DistPoint `json:"distribution"`
	// ServiceLatency and ServiceDist are, in the open loop, the latency
	// measured from each request's actual send (what the server took),
	// next to Latency from the intended send time.
	ServiceLatency *Percentiles `json:"service_latency,omitempty"`
	ServiceDist    []DistPoint  `json:"service_distribution,omitempty"`
	// BucketSeconds is the length of the Series' intervals (the last ones,
	// when they grew with the run: see Config.Bucket).
	BucketSeconds float64 `json:"bucket_seconds"`
	// FirstBucketSeconds, when the intervals grew with the run, is the
	// length of the first ones.
	FirstBucketSeconds float64    `json:"first_bucket_seconds,omitempty"`
	Series             []Interval `json:"series"`
	// SKUs are the scenario's products, in the order of Interval.SKUStock.
	SKUs []string `json:"skus,omitempty"`
	// SoldOut lists the SKUs whose stock ran out during the run.
	SoldOut []SoldOut `json:"sold_out,omitempty"`
	// Drop is what a drop's users did, Page its product page; nil in other
	// runs.
	Drop *DropResult `json:"drop,omitempty"`
	Page *PageStats  `json:"page,omitempty"`
	// Queue is a drop's waiting room and bots (Scenario.Admission,
	// Scenario.Bots); nil without them.
	Queue *QueueResult `json:"queue,omitempty"`
	// Thresholds are the --threshold checks, once Check ran.
	Thresholds []ThresholdResult `json:"thresholds,omitempty"`
	Audit      *AuditReport      `json:"audit,omitempty"`

	workers []workerState
	// hist is the measured latency histogram (Histogram).
	hist *hdrhistogram.Histogram
}

// collector drains the shards once a bucket into the time series, and prints
// progress once a second.
type collector struct {
	r     *runner
	admin *orderhttp.Client
	// total is every answer to a request sent after the warmup.
	total  counts
	seen   map[Answer]int64 // every answer, for progress
	series []Interval
	last   time.Time
	cur    counts // scratch for one interval
	// prog gathers the intervals since the last progress line.
	prog     counts
	progFrom time.Time
	stock    atomic.Int64
	guess    atomic.Bool
	// bucket is the length of the intervals; grows makes it follow the
	// run's length so far (Config.Bucket), first is then its first value.
	bucket, first time.Duration
	grows         bool
}

func newCollector(r *runner, admin *orderhttp.Client) *collector {
	th, pages := r.cfg.LateThreshold, r.drop != nil
	c := &collector{r: r, admin: admin, total: newCounts(th, pages, histSigFigs), seen: map[Answer]int64{}, last: r.start,
		cur: newCounts(th, pages, intervalSigFigs), prog: newCounts(th, pages, intervalSigFigs), progFrom: r.start}
	c.stock.Store(-1)
	c.bucket, c.grows = r.cfg.Bucket, r.cfg.Bucket <= 0
	if c.grows {
		c.bucket = defaultBucket(0)
	}
	c.first = c.bucket
	return c
}

// run ticks once a bucket (and once exactly when the warmup ends) until
// loadDone is closed.
func (c *collector) run(ctx context.Context, loadDone <-chan struct{}) {
	if !c.r.cfg.NoServer {
		polled := make(chan struct{})
		go func() { c.pollStock(ctx, loadDone); close(polled) }()
		defer func() { <-polled }()
	}
	for {
		if c.grows {
			c.bucket = defaultBucket(c.last.Sub(c.r.start))
		}
		next := c.last.Add(c.bucket)
		if c.last.Before(c.r.measureStart) && c.r.measureStart.Before(next) {
			next = c.r.measureStart
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-t.C:
			// Now, not the timer's time: the interval ends when it is read.
			c.tick(time.Time{})
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
		ok := len(c.r.skus) <= maxChartSKUs
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

// tick closes the interval that ends at end, the end of the run (the last
// interval), or now when end is zero: read after the shards are drained, so
// that every answer in the interval came before its end.
func (c *collector) tick(end time.Time) {
	final := !end.IsZero()
	iv := &c.cur
	iv.reset()
	for _, s := range c.r.shards {
		s.drain(iv)
	}
	now := end
	if !final {
		now = time.Now()
	}
	secs := now.Sub(c.last).Seconds()
	out := c.interval(iv, now, secs)
	c.last = now
	c.series = append(c.series, out)
	iv.moveTo(&c.prog)
	short := final && secs < sliver*c.bucket.Seconds() && len(c.series) > 1
	if (now.Sub(c.progFrom) >= time.Second-time.Millisecond || final) && !short {
		c.progress(now, out)
	}
}

// interval summarises iv, the answers of the secs seconds up to now.
func (c *collector) interval(iv *counts, now time.Time, secs float64) Interval {
	out := Interval{T: now.Sub(c.r.start).Seconds(), Seconds: secs, Warmup: c.last.Before(c.r.measureStart),
		Orders: iv.orders, Late: iv.lateness.Late, StockLeft: c.stock.Load(), StockIsGuess: c.guess.Load(),
		Codes: make(map[string]int64, len(iv.answers))}
	out.Answers, out.Errors, out.Refused = classify(iv.answers)
	for k, v := range iv.answers {
		out.Codes[k.String()] += v
		c.seen[k] += v
	}
	p := PercentilesOf(iv.hist)
	out.P50, out.P90, out.P99, out.Max = p.P50, p.P90, p.P99, p.Max
	if secs > 0 {
		out.AnswersPerS = float64(out.Answers) / secs
		out.OrdersPerS = float64(iv.orders) / secs
	}
	if !c.r.cfg.NoServer && len(c.r.skus) <= maxChartSKUs {
		out.SKUStock = make([]int64, len(c.r.skus))
		for i := range c.r.skus {
			out.SKUStock[i] = c.r.cfg.Scenario.Stock - c.r.soldByClient[i].Load()
		}
	}
	if len(c.r.cfg.Stages) > 0 {
		out.Target = StageTarget(c.r.cfg.Stages, now.Sub(c.r.start))
	}
	if pg := iv.page; pg != nil {
		pp := PercentilesOf(pg.hist)
		out.Pages, out.PageErrors, out.PageP50, out.PageP99 = pg.n, pg.errors, pp.P50, pp.P99
		if secs > 0 {
			out.PagesPerS = float64(pg.n) / secs
		}
	}
	return out
}

// progress prints one line for the time since the last one; iv is the
// interval that just ended.
func (c *collector) progress(now time.Time, iv Interval) {
	p := &c.prog
	secs := now.Sub(c.progFrom).Seconds()
	c.progFrom = now
	defer p.reset()
	w := c.r.cfg.Progress
	if w == nil || secs <= 0 {
		return
	}
	var answers int64
	for _, v := range p.answers {
		answers += v
	}
	var b strings.Builder
	switch {
	case iv.Warmup:
		fmt.Fprintf(&b, "%6.1fs warmup", iv.T)
	case c.r.drop != nil:
		fmt.Fprintf(&b, "%8s  pages/s %6.0f", fmt.Sprintf("T%+.1fs", iv.T-c.r.drop.lead.Seconds()), float64(p.page.n)/secs)
	default:
		fmt.Fprintf(&b, "%6.1fs", iv.T)
	}
	fmt.Fprintf(&b, "  orders/s %7.0f  answers/s %7.0f  p99 %8.2fms", float64(p.orders)/secs,
		float64(answers)/secs, PercentilesOf(p.hist).P99)
	if iv.StockLeft >= 0 {
		approx := ""
		if iv.StockIsGuess {
			approx = "~"
		}
		fmt.Fprintf(&b, "  stock %s%d", approx, iv.StockLeft)
	}
	refused, errs := answerSummary(c.seen)
	if refused != "" {
		b.WriteString("  refused: " + refused)
	}
	if errs != "" {
		b.WriteString("  errors: " + errs)
	}
	if c.r.cfg.Terminal {
		fmt.Fprintf(w, "\r\033[K%s", b.String())
	} else {
		fmt.Fprintln(w, b.String())
	}
}

// answerSummary lists the business refusals ("409 sold_out=12") and the other
// answers that are not 201s ("503 overloaded=3 timeout=1"), each sorted.
func answerSummary(m map[Answer]int64) (refused, other string) {
	var r, o []string
	for _, ac := range sortedAnswers(m) {
		switch {
		case ac.Status == 201:
		case ac.IsRefusal():
			r = append(r, fmt.Sprintf("%s=%d", ac.Answer, ac.Count))
		default:
			o = append(o, fmt.Sprintf("%s=%d", ac.Answer, ac.Count))
		}
	}
	sort.Strings(r)
	sort.Strings(o)
	return strings.Join(r, " "), strings.Join(o, " ")
}

// classify counts the answers in m: all of them, the errors and the business
// refusals.
func classify(m map[Answer]int64) (all, errs, refused int64) {
	for k, v := range m {
		all += v
		switch {
		case k.IsError():
			errs += v
		case k.IsRefusal():
			refused += v
		}
	}
	return all, errs, refused
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

// ParseAnswer is Answer.String's inverse.
func ParseAnswer(s string) Answer {
	var a Answer
	if n, err := fmt.Sscanf(s, "%d %s", &a.Status, &a.Code); n >= 1 && (err == nil || n == 1) {
		return a
	}
	return Answer{Code: s}
}

// result closes the last interval at end and summarises the measured time.
func (c *collector) result(end time.Time) *Result {
	if end.After(c.last) {
		c.tick(end)
	}
	for _, s := range c.r.shards {
		s.drainMeasured(&c.total)
	}
	if c.r.cfg.Terminal && c.r.cfg.Progress != nil {
		fmt.Fprintln(c.r.cfg.Progress)
	}
	cfg := c.r.cfg
	t := &c.total
	res := &Result{Label: cfg.Label, Started: c.r.start, Mode: "closed", Orders: t.orders,
		Answers: sortedAnswers(t.answers), Late: t.lateness.Late,
		MaxLagMs: float64(t.lateness.MaxLag.Microseconds()) / 1000,
		Latency:  PercentilesOf(t.hist), Dist: Distribution(t.hist), Series: c.series,
		BucketSeconds: c.bucket.Seconds(), SKUs: c.r.skus, SoldOut: c.r.soldOut(), hist: t.hist}
	if c.bucket != c.first {
		res.FirstBucketSeconds = c.first.Seconds()
	}
	res.Requests, res.Errors, res.Refused = classify(t.answers)
	measureStart := c.r.measureStart
	if end.After(measureStart) {
		res.Seconds = end.Sub(measureStart).Seconds()
		res.AchievedRate = float64(res.Requests) / res.Seconds
		res.OrdersPerSec = float64(t.orders) / res.Seconds
	}
	res.OfferedRate = res.AchievedRate
	if cfg.Rate > 0 {
		res.Mode = "open"
		res.OfferedRate = cfg.Rate
		if ran := end.Sub(c.r.start).Seconds(); len(cfg.Stages) > 0 && ran > 0 {
			// The ramp's average over the run, warmup included.
			res.OfferedRate = float64(Schedule{Start: c.r.start, Stages: cfg.Stages}.Due(end)) / ran
		}
		svc := PercentilesOf(t.svc)
		res.ServiceLatency, res.ServiceDist = &svc, Distribution(t.svc)
	}
	if pg := t.page; pg != nil {
		// A drop: each step has an intended time, like the open loop's.
		res.Mode = "drop"
		svc := PercentilesOf(t.svc)
		res.ServiceLatency, res.ServiceDist = &svc, Distribution(t.svc)
		res.Page = &PageStats{Requests: pg.n, NotModified: pg.notModified, Errors: pg.errors, Other: pg.other,
			Latency: PercentilesOf(pg.hist)}
		for i, iv := range res.Series {
			if res.Charted(i) {
				res.Page.PeakPerS = max(res.Page.PeakPerS, iv.PagesPerS)
			}
		}
	}
	return res
}

// Charted reports whether interval i of res is drawn and printed: a last
// interval much shorter than a bucket is left out, its rates would be noise.
func (res *Result) Charted(i int) bool {
	iv := res.Series[i]
	bucket := res.BucketSeconds
	if bucket <= 0 {
		bucket = 1
	}
	return !(i > 0 && i == len(res.Series)-1 && iv.Seconds < sliver*bucket)
}

// Histogram is the measured latency histogram; nil in a result read back
// from JSON.
func (res *Result) Histogram() *hdrhistogram.Histogram { return res.hist }
