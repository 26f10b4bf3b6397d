package loadtest

import (
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: latencies are recorded in microseconds from 1 µs to 10
// minutes with 3 significant digits.
const (
	histMinMicros = 1
	histMaxMicros = int64(10 * time.Minute / time.Microsecond)
	histSigFigs   = 3
)

// intervalSigFigs is the precision of the time series' histograms: a
// bucket's percentiles on a chart need no more than 2 digits, and the
// collector merges and clears these histograms every bucket (as often as
// every 10 ms), which takes a tenth of the time at 2 digits as at 3.
const intervalSigFigs = 2

// NewHistogram returns an empty latency histogram in microseconds.
func NewHistogram() *hdrhistogram.Histogram { return newHistogram(histSigFigs) }

func newHistogram(sigFigs int) *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, sigFigs)
}

// RecordLatency adds d to h, clamped to the histogram's range.
func RecordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < histMinMicros {
		us = histMinMicros
	}
	if us > histMaxMicros {
		us = histMaxMicros
	}
	_ = h.RecordValue(us)
}

// Percentiles are the usual latency summary, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// PercentilesOf summarises h (in microseconds) in milliseconds.
func PercentilesOf(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// DistPoint is one point of the latency distribution: Percentile percent of
// the requests took at most LatencyMs.
type DistPoint struct {
	Percentile float64 `json:"percentile"`
	LatencyMs  float64 `json:"latency_ms"`
}

// Distribution returns the latency at a fixed ladder of percentiles (50, 75,
// 90, 95, 99, 99.5, 99.9, ... 100), the shape of the classic HdrHistogram plot.
func Distribution(h *hdrhistogram.Histogram) []DistPoint {
	if h.TotalCount() == 0 {
		return nil
	}
	qs := []float64{0, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 99.75, 99.9, 99.95, 99.99, 99.999, 100}
	out := make([]DistPoint, 0, len(qs))
	for _, q := range qs {
		out = append(out, DistPoint{Percentile: q, LatencyMs: float64(h.ValueAtQuantile(q)) / 1000})
	}
	return out
}

// Answer identifies one kind of answer: an HTTP status and the API's error
// code ("" for successes). Status 0 is a transport error (no answer), with
// Code describing it.
type Answer struct {
	Status int    `json:"status"`
	Code   string `json:"code,omitempty"`
}

// CodeCancelled is the Code of a request cut short because the run was
// interrupted: the tool's doing, neither an answer nor an error.
const CodeCancelled = "cancelled"

// Business refusals: the sale saying no, as it must once the stock is gone,
// a user has their share, or outside the sale's window. They are answers, not
// errors.
const (
	CodeSoldOut       = "sold_out"
	CodeLimitExceeded = "limit_exceeded"
	// CodeNotStarted refuses an order before the sale's starts_at (with
	// Retry-After), CodeSaleEnded one from its ends_at on.
	CodeNotStarted = "not_started"
	CodeSaleEnded  = "sale_ended"
)

// IsError reports whether a is an error: a 5xx or a transport failure (no
// answer at all). Business refusals and other 4xx are not errors.
func (a Answer) IsError() bool {
	return a.Status >= 500 || (a.Status == 0 && a.Code != CodeCancelled)
}

// IsRefusal reports whether a is a business refusal: 409 sold_out,
// limit_exceeded, not_started or sale_ended.
func (a Answer) IsRefusal() bool {
	if a.Status != 409 {
		return false
	}
	switch a.Code {
	case CodeSoldOut, CodeLimitExceeded, CodeNotStarted, CodeSaleEnded:
		return true
	}
	return false
}

// The kinds of order answers a drop's report counts over time (KindOf).
const (
	KindOrder      = "201"
	KindNotStarted = CodeNotStarted
	KindSoldOut    = CodeSoldOut
	KindLimit      = CodeLimitExceeded
	KindSaleEnded  = CodeSaleEnded
	// KindOther4xx is every other answer below 500 (in practice 4xx).
	KindOther4xx  = "other 4xx"
	Kind5xx       = "5xx"
	KindTransport = "transport error"
)

// Kinds lists the kinds of answers in the order the drop's chart stacks
// them: orders at the bottom, then the refusals, then the errors.
func Kinds() []string {
	return []string{KindOrder, KindNotStarted, KindSoldOut, KindLimit, KindSaleEnded, KindOther4xx, Kind5xx, KindTransport}
}

// KindOf returns the kind of a, or "" for a request the run itself cut short
// (CodeCancelled), which is no answer.
func KindOf(a Answer) string {
	switch {
	case a.Status == 201:
		return KindOrder
	case a.IsRefusal():
		return a.Code
	case a.Status >= 500:
		return Kind5xx
	case a.Status == 0 && a.Code == CodeCancelled:
		return ""
	case a.Status == 0:
		return KindTransport
	default:
		return KindOther4xx
	}
}

// ByKind adds up the interval's answers by kind (see KindOf).
func (iv Interval) ByKind() map[string]int64 {
	out := map[string]int64{}
	for s, n := range iv.Codes {
		if k := KindOf(ParseAnswer(s)); k != "" {
			out[k] += n
		}
	}
	return out
}

// AnswerCount is how many answers of one kind a run got.
type AnswerCount struct {
	Answer
	Count int64 `json:"count"`
}

// shard is one slice of the live statistics. Workers are spread over shards
// so that no mutex is shared by all of them; the collector drains each shard
// once a second.
type shard struct {
	mu sync.Mutex
	// all is every answer, for the time series and progress.
	all counts
	// measured is the answers to requests sent after the warmup, for the
	// summary.
	measured counts
}

// counts is what a shard or an interval gathers.
type counts struct {
	// hist is the latency (from the intended send time in the open loop),
	// svc the service time (from the actual send).
	hist     *hdrhistogram.Histogram
	svc      *hdrhistogram.Histogram
	answers  map[Answer]int64
	orders   int64
	lateness Lateness
	// page is a drop's product page; nil in other runs.
	page *pageCounts
}

// pageCounts is the product page's share of a shard or an interval: its
// GETs, their latency (from the actual send) and how they ended.
type pageCounts struct {
	hist *hdrhistogram.Histogram
	// n counts every answer; notModified the 304s, errors the 5xx answers
	// and transport failures, other the rest that are not 200.
	n, notModified, errors, other int64
}

func (p *pageCounts) add(lat time.Duration, a Answer) {
	RecordLatency(p.hist, lat)
	p.n++
	switch {
	case a.Status == 304:
		p.notModified++
	case a.IsError():
		p.errors++
	case a.Status != 200:
		p.other++
	}
}

// moveTo adds p to into and empties p.
func (p *pageCounts) moveTo(into *pageCounts) {
	into.hist.Merge(p.hist)
	into.n += p.n
	into.notModified += p.notModified
	into.errors += p.errors
	into.other += p.other
	p.reset()
}

func (p *pageCounts) reset() {
	p.hist.Reset()
	p.n, p.notModified, p.errors, p.other = 0, 0, 0, 0
}

// newCounts returns empty counts whose histograms keep sigFigs digits;
// pages adds the product page's (a drop's).
func newCounts(threshold time.Duration, pages bool, sigFigs int) counts {
	c := counts{hist: newHistogram(sigFigs), svc: newHistogram(sigFigs), answers: map[Answer]int64{},
		lateness: Lateness{Threshold: threshold}}
	if pages {
		c.page = &pageCounts{hist: newHistogram(sigFigs)}
	}
	return c
}

func (c *counts) add(lat, svc time.Duration, a Answer, units int64, intended, sent time.Time, open bool) {
	RecordLatency(c.hist, lat)
	RecordLatency(c.svc, svc)
	c.answers[a]++
	if units > 0 {
		c.orders++
	}
	if open {
		c.lateness.Record(intended, sent)
	}
}

// moveTo adds c to into and empties c.
func (c *counts) moveTo(into *counts) {
	into.hist.Merge(c.hist)
	c.hist.Reset()
	into.svc.Merge(c.svc)
	c.svc.Reset()
	for k, v := range c.answers {
		into.answers[k] += v
	}
	clear(c.answers)
	into.orders += c.orders
	c.orders = 0
	into.lateness.Merge(c.lateness)
	c.lateness = Lateness{Threshold: c.lateness.Threshold}
	if c.page != nil {
		c.page.moveTo(into.page)
	}
}

func (c *counts) reset() {
	c.hist.Reset()
	c.svc.Reset()
	clear(c.answers)
	c.orders = 0
	c.lateness = Lateness{Threshold: c.lateness.Threshold}
	if c.page != nil {
		c.page.reset()
	}
}

func newShard(threshold time.Duration, pages bool) *shard {
	return &shard{all: newCounts(threshold, pages, intervalSigFigs), measured: newCounts(threshold, pages, histSigFigs)}
}

// record accounts one answer: lat is its latency, svc its service time. units is the number of stock units a new
// order (a 201 that is not a replay) took; 0 for any other answer. measured
// tells whether the request was sent after the warmup.
func (s *shard) record(lat, svc time.Duration, a Answer, units int64, intended, sent time.Time, open, measured bool) {
	s.mu.Lock()
	s.all.add(lat, svc, a, units, intended, sent, open)
	if measured {
		s.measured.add(lat, svc, a, units, intended, sent, open)
	}
	s.mu.Unlock()
}

// recordPage accounts one product page answer (a drop's); lat runs from its
// actual send.
func (s *shard) recordPage(lat time.Duration, a Answer) {
	s.mu.Lock()
	s.all.page.add(lat, a)
	s.measured.page.add(lat, a)
	s.mu.Unlock()
}

// drain moves the shard's counts of every answer into all, leaving them
// empty.
func (s *shard) drain(all *counts) {
	s.mu.Lock()
	s.all.moveTo(all)
	s.mu.Unlock()
}

// drainMeasured moves the shard's measured counts into measured; they are
// read once, at the end of the run.
func (s *shard) drainMeasured(measured *counts) {
	s.mu.Lock()
	s.measured.moveTo(measured)
	s.mu.Unlock()
}

// sortedAnswers returns m as a list, successes first, then by status and code.
func sortedAnswers(m map[Answer]int64) []AnswerCount {
	out := make([]AnswerCount, 0, len(m))
	for k, v := range m {
		out = append(out, AnswerCount{Answer: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Status != out[j].Status {
			return out[i].Status < out[j].Status
		}
		return out[i].Code < out[j].Code
	})
	return out
}
