package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"

	"github.com/flashorder/flashorder/loadtest"
)

// fromT0 renders seconds since T0 for people: "T0", "T+412 ms", "T-1.50 s".
func fromT0(secs float64) string {
	switch {
	case math.Abs(secs) < 0.0005:
		return "T0"
	case secs < 0:
		return "T-" + fmtDur(-secs)
	default:
		return "T+" + fmtDur(secs)
	}
}

// fmtSince renders a short duration with the digits it needs: "0.42 ms",
// "3.1 ms", "412 ms", "1.20 s".
func fmtSince(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case math.Abs(ms) < 1:
		return fmt.Sprintf("%.2f ms", ms)
	case math.Abs(ms) < 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmtDur(ms / 1000)
	}
}

// dropStory is what a drop's headline and first screen tell, worked out once.
type dropStory struct {
	units int64
	// window is the audit's, nil when the audit did not run.
	window *loadtest.WindowCheck
	// soldOut tells whether the client saw the last unit go; lasted is then
	// the time from starts_at to the last order's created_at (orderd's
	// clock), or to the client's answer when the audit did not run.
	soldOut bool
	lasted  time.Duration
	orders  int64
	refused map[string]int64 // business refusals by code
	errors  int64            // orders' and product page's
}

func newDropStory(res *loadtest.Result) dropStory {
	s := dropStory{units: res.Config.Scenario.Stock, refused: map[string]int64{}}
	if res.Audit != nil {
		s.window = res.Audit.Window
	}
	var errs int64
	s.orders, _, errs, _ = totals(res)
	if res.Page != nil {
		errs += res.Page.Errors
	}
	s.errors = errs
	for _, a := range res.Answers {
		if a.IsRefusal() {
			s.refused[a.Code] += a.Count
		}
	}
	s.lasted, s.soldOut = res.Lasted()
	return s
}

// refusals lists the business refusals by code, in the drop's order of kinds.
func (s dropStory) refusals() string {
	var parts []string
	for _, k := range loadtest.Kinds() {
		if n := s.refused[k]; n > 0 {
			parts = append(parts, thousands(n)+" "+k)
		}
	}
	return strings.Join(parts, ", ")
}

// dropHeadline tells a drop's story in one sentence: the orders before the
// start, when the first order was accepted, how long the stock lasted, the
// refusals and the errors.
func dropHeadline(res *loadtest.Result) string {
	s := newDropStory(res)
	var b strings.Builder
	fmt.Fprintf(&b, "The drop: %s units for %s users at T0", thousands(s.units), thousands(int64(res.Drop.Users)))
	if w := s.window; w != nil {
		fmt.Fprintf(&b, "; %s orders before the start", thousands(int64(w.BeforeStart)))
		if w.BeforeStart > 0 {
			b.WriteString(" (must be 0)")
		}
		if w.Orders > 0 {
			fmt.Fprintf(&b, "; the first order was accepted %s starts_at", relative(w.First.Sub(w.StartsAt)))
		}
	}
	switch {
	case s.soldOut:
		fmt.Fprintf(&b, "; the stock lasted %s (%s orders)", fmtSince(s.lasted), thousands(s.orders))
	case s.orders == 0:
		b.WriteString("; no order was accepted")
	default:
		fmt.Fprintf(&b, "; it did not sell out: %s orders", thousands(s.orders))
	}
	var refused int64
	for _, n := range s.refused {
		refused += n
	}
	fmt.Fprintf(&b, "; %s refusals", thousands(refused))
	if r := s.refusals(); r != "" {
		fmt.Fprintf(&b, " (%s)", r)
	}
	fmt.Fprintf(&b, "; %s errors (5xx or no answer).", thousands(s.errors))
	return b.String()
}

// relative renders d as "0.42 ms after" or "3.1 ms before".
func relative(d time.Duration) string {
	if d < 0 {
		return fmtSince(-d) + " before"
	}
	return fmtSince(d) + " after"
}

// Tile is one figure of a drop's first screen; Bad marks one that must not
// be what it is.
type Tile struct {
	Name, Value, Note string
	Bad               bool
}

// DropTiles are the figures a drop's report opens with: orders before the
// start, the first order against starts_at, how long the stock lasted, the
// errors, the product page's and the orders' peak rates and latency, and
// the audit.
func DropTiles(res *loadtest.Result) []Tile {
	s := newDropStory(res)
	var tiles []Tile
	if w := s.window; w != nil {
		tiles = append(tiles, Tile{Name: "orders before the start", Value: thousands(int64(w.BeforeStart)),
			Note: "must be 0: 201s created before starts_at", Bad: w.BeforeStart > 0})
		first := Tile{Name: "first order accepted", Value: "none"}
		if w.Orders > 0 {
			first.Value = relative(w.First.Sub(w.StartsAt))
			first.Note = "starts_at, by the orders' created_at"
			first.Bad = w.First.Before(w.StartsAt)
		}
		tiles = append(tiles, first)
	}
	lasted := Tile{Name: "the stock lasted", Value: "not sold out", Note: fmt.Sprintf("%s of %s units sold", thousands(s.orders), thousands(s.units))}
	if s.soldOut {
		lasted.Value = fmtSince(s.lasted)
		lasted.Note = fmt.Sprintf("%s units sold, from starts_at to the last order", thousands(s.units))
	}
	tiles = append(tiles, lasted,
		Tile{Name: "errors", Value: thousands(s.errors), Note: "5xx and no answer, orders and product page", Bad: s.errors > 0})
	if pg := res.Page; pg != nil {
		tiles = append(tiles, Tile{Name: "product page", Value: rate(pg.PeakPerS) + "/s at the peak",
			Note: fmt.Sprintf("%s GETs, p99 %.2f ms", thousands(pg.Requests), pg.Latency.P99)})
	}
	var peak float64
	for _, iv := range buckets(res) {
		peak = max(peak, iv.AnswersPerS)
	}
	tiles = append(tiles, Tile{Name: "orders", Value: rate(peak) + "/s at the peak",
		Note: fmt.Sprintf("%s answers, p99 %.2f ms", thousands(res.Requests), res.Latency.P99)})
	if a := res.Audit; a != nil {
		audit := Tile{Name: "audit", Value: "OK", Note: "no oversell, no lost order, the window held"}
		if !a.OK {
			audit = Tile{Name: "audit", Value: "FAILED", Note: fmt.Sprintf("%d violations", len(a.Violations)), Bad: true}
		}
		tiles = append(tiles, audit)
	}
	return tiles
}

// dropLoad describes a drop's load for the summary table.
func dropLoad(res *loadtest.Result) string {
	sc := res.Config.Scenario
	load := fmt.Sprintf("drop: %s users arriving over %s up to T0 (most at the end), clocks off by up to ±%s", thousands(int64(sc.Users)),
		sc.Lead, sc.ClockSkew)
	if sc.After > 0 {
		load += fmt.Sprintf("; told sold out, they reload and order again every ~%s for %s", sc.Refresh, sc.After)
	}
	return load + fmt.Sprintf("; at most %d requests in flight", res.Config.Concurrency)
}

// writeDrop prints a drop's part of the summary: the users, the orders, the
// product page and the answers over time, by second from T0.
func writeDrop(w io.Writer, res *loadtest.Result) {
	d, sc := res.Drop, res.Config.Scenario
	fmt.Fprintf(w, "drop       %s users arrived over %s up to T0 = starts_at %s, clocks off by up to ±%s\n",
		thousands(int64(d.Users)), sc.Lead, d.StartsAt.Format("2006-01-02T15:04:05.000Z07:00"), sc.ClockSkew)
	fmt.Fprintf(w, "users      %s bought, %s told sold out (and reloading for %s), %s over the limit", thousands(d.Bought),
		thousands(d.SoldOut), sc.After, thousands(d.Limited))
	if n := d.Ended + d.Refused; n > 0 {
		fmt.Fprintf(w, ", %s refused otherwise", thousands(n))
	}
	fmt.Fprintf(w, ", %s without an answer at the end\n", thousands(d.Unfinished))
	l := res.Latency
	fmt.Fprintf(w, "orders     %s answers, %s sent before T0 by orderbench's clock; p50 %.2f ms, p99 %.2f ms, max %.2f ms (from the intended time)\n",
		thousands(res.Requests), thousands(d.EarlyOrders), l.P50, l.P99, l.Max)
	if pg := res.Page; pg != nil {
		pl := pg.Latency
		fmt.Fprintf(w, "page       %s GETs (%s not modified), up to %s/s; p50 %.2f ms, p99 %.2f ms, max %.2f ms (orderd's time); %s errors\n",
			thousands(pg.Requests), thousands(pg.NotModified), rate(pg.PeakPerS), pl.P50, pl.P99, pl.Max, thousands(pg.Errors))
	}
	writeTimeline(w, res)
}

// writeTimeline prints the answers over time in rows of a second or more
// from T0: the product page's, then the orders' by kind (those that
// occurred), with T0 and the sell-out marked.
func writeTimeline(w io.Writer, res *loadtest.Result) {
	lead := res.Drop.Lead
	span := runEnd(res)
	if span <= 0 {
		return
	}
	step := math.Max(1, niceNum(span/20, false))
	first := int(math.Floor(-lead / step))
	type row struct {
		pages int64
		kinds map[string]int64
	}
	rows := map[int]*row{}
	used := map[string]bool{loadtest.KindOrder: true}
	for x, iv := range buckets(res) {
		n := int(math.Floor(x / step))
		if rows[n] == nil {
			rows[n] = &row{kinds: map[string]int64{}}
		}
		rows[n].pages += iv.Pages
		for k, c := range iv.ByKind() {
			rows[n].kinds[k] += c
			used[k] = true
		}
	}
	cols := []string{"page"}
	for _, k := range loadtest.Kinds() {
		if used[k] {
			cols = append(cols, k)
		}
	}
	soldRow, soldAt := math.MinInt, ""
	if len(res.SoldOut) > 0 {
		at := res.SoldOut[0].At - lead
		soldRow, soldAt = int(math.Floor(at/step)), "sold out at "+fromT0(at)
	}
	fmt.Fprintf(w, "timeline   answers per %s: product page GETs, then orders by kind\n", fmtDur(step))
	fmt.Fprintf(w, "  %-13s", "from T0")
	for _, c := range cols {
		fmt.Fprintf(w, " %*s", max(len(c), 7), c)
	}
	fmt.Fprintln(w)
	last := int(math.Floor((span - lead) / step))
	for n := first; n <= last; n++ {
		if n == 0 {
			fmt.Fprintln(w, "  ---- T0: the sale starts (starts_at)")
		}
		r := rows[n]
		if r == nil {
			r = &row{kinds: map[string]int64{}}
		}
		fmt.Fprintf(w, "  %-13s", fmt.Sprintf("%+g..%+gs", math.Max(float64(n)*step, -lead), float64(n+1)*step))
		for i, c := range cols {
			v := r.kinds[c]
			if i == 0 {
				v = r.pages
			}
			fmt.Fprintf(w, " %*s", max(len(c), 7), thousands(v))
		}
		if n == soldRow {
			fmt.Fprint(w, "  <- "+soldAt)
		}
		fmt.Fprintln(w)
	}
}

// dropCharts are the charts a drop's report opens with: the orders' answers
// by kind, then the product page's rate and latency beside the orders'.
func dropCharts(res *loadtest.Result) []template.HTML {
	charts := []template.HTML{kindsChart(res).SVG(), pageRateChart(res).SVG(), pageLatencyChart(res).SVG()}
	if res.Queue != nil && res.Queue.Admission == loadtest.AdmissionQueue {
		charts = append([]template.HTML{queueChart(res).SVG()}, charts...)
	}
	return charts
}

// kindsChart stacks a drop's order answers per second by kind, T0 and the
// sell-out marked.
func kindsChart(res *loadtest.Result) Chart {
	c := timeChart(res, "Order answers per second, by kind (stacked)", "answers per second")
	c.Stacked = true
	type bucket struct {
		x, secs float64
		kinds   map[string]int64
	}
	var bs []bucket
	sum := map[string]int64{}
	for x, iv := range buckets(res) {
		b := bucket{x, iv.Seconds, iv.ByKind()}
		for k, n := range b.kinds {
			sum[k] += n
		}
		bs = append(bs, b)
	}
	for _, k := range loadtest.Kinds() {
		if sum[k] == 0 && k != loadtest.KindOrder {
			continue
		}
		l := Line{Name: k, Color: kindColor(k)}
		for _, b := range bs {
			if b.secs > 0 {
				l.Points = append(l.Points, [2]float64{b.x, float64(b.kinds[k]) / b.secs})
			}
		}
		c.Lines = append(c.Lines, l)
	}
	return c
}

// Colors of the product page's lines; the orders' are grey.
const (
	pageColor  = "#1f77b4"
	orderColor = "#555"
)

// pageRateChart draws the product page's GETs per second beside the orders'
// answers and the new orders.
func pageRateChart(res *loadtest.Result) Chart {
	c := timeChart(res, "Throughput: product page GETs and orders per second", "per second")
	page := Line{Name: "product page GETs/s", Color: pageColor}
	answers := Line{Name: "order answers/s", Color: orderColor}
	orders := Line{Name: "new orders/s", Color: kindColor(loadtest.KindOrder)}
	for x, iv := range buckets(res) {
		page.Points = append(page.Points, [2]float64{x, iv.PagesPerS})
		answers.Points = append(answers.Points, [2]float64{x, iv.AnswersPerS})
		orders.Points = append(orders.Points, [2]float64{x, iv.OrdersPerS})
	}
	c.Lines = []Line{page, answers, orders}
	return c
}

// pageLatencyChart draws the product page's latency percentiles beside the
// orders', per bucket.
func pageLatencyChart(res *loadtest.Result) Chart {
	c := timeChart(res, "Latency per "+bucketName(res)+" bucket: product page and orders", "ms (log)")
	c.LogY = true
	pageP50 := Line{Name: "page p50", Color: pageColor, Dashed: true}
	pageP99 := Line{Name: "page p99", Color: pageColor}
	orderP50 := Line{Name: "orders p50", Color: orderColor, Dashed: true}
	orderP99 := Line{Name: "orders p99", Color: orderColor}
	for x, iv := range buckets(res) {
		if iv.Pages > 0 {
			pageP50.Points = append(pageP50.Points, [2]float64{x, iv.PageP50})
			pageP99.Points = append(pageP99.Points, [2]float64{x, iv.PageP99})
		}
		if iv.Answers > 0 {
			orderP50.Points = append(orderP50.Points, [2]float64{x, iv.P50})
			orderP99.Points = append(orderP99.Points, [2]float64{x, iv.P99})
		}
	}
	c.Lines = []Line{pageP99, pageP50, orderP99, orderP50}
	return c
}
