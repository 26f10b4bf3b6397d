package report

import (
	"fmt"
	"html/template"
	"io"
	"iter"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/flashorder/flashorder/loadtest"
)

// nines maps a percentile to the x of the classic latency-by-percentile plot:
// 90 -> 1, 99 -> 2, 99.9 -> 3.
func nines(q float64) float64 {
	if q >= 100 {
		return 5.5
	}
	return math.Min(-math.Log10(1-q/100), 5.5)
}

// NinesTicks label the x axis of a latency distribution chart.
var NinesTicks = map[float64]string{0: "0%", 1: "90%", 2: "99%", 3: "99.9%", 4: "99.99%", 5: "99.999%", 5.5: "max"}

// answerColor gives each answer the color of its kind (kindColor).
func answerColor(a loadtest.Answer) string { return kindColor(loadtest.KindOf(a)) }

// kindColor gives each kind of answer a color that says what it is: green
// orders, blue not_started (not yet), orange and yellow refusals of a sale
// that is over or done with the user, red errors.
func kindColor(kind string) string {
	switch kind {
	case loadtest.KindOrder:
		return "#2ca02c"
	case loadtest.KindNotStarted:
		return "#6baed6"
	case loadtest.KindSoldOut:
		return "#ff7f0e"
	case loadtest.KindLimit:
		return "#f2c744"
	case loadtest.KindSaleEnded:
		return "#8c8c8c"
	case loadtest.Kind5xx:
		return "#d62728"
	case loadtest.KindTransport:
		return "#7b1113"
	default:
		return "#9467bd"
	}
}

// runEnd is the end of res's last charted interval, where its time axes end.
func runEnd(res *loadtest.Result) float64 {
	for i := len(res.Series) - 1; i >= 0; i-- {
		if res.Charted(i) {
			return res.Series[i].T
		}
	}
	return 0
}

// bucketName is the length of res's buckets for titles: "100 ms", or "10 ms
// to 100 ms" when they grew with the run.
func bucketName(res *loadtest.Result) string {
	if res.FirstBucketSeconds > 0 {
		return fmtDur(res.FirstBucketSeconds) + " to " + fmtDur(res.BucketSeconds)
	}
	return fmtDur(res.BucketSeconds)
}

// timeAxis is how res's time charts count: from the start of the run, or a
// drop's from T0 (shift is where T0 lies from the start).
func timeAxis(res *loadtest.Result) (shift float64, label string) {
	if res.Drop != nil {
		return res.Drop.Lead, "time from T0 (starts_at)"
	}
	return 0, "time since start"
}

// buckets yields res's charted intervals with the x of their middle on the
// time charts' axis.
func buckets(res *loadtest.Result) iter.Seq2[float64, loadtest.Interval] {
	shift, _ := timeAxis(res)
	return func(yield func(float64, loadtest.Interval) bool) {
		for i, iv := range res.Series {
			if res.Charted(i) && !yield(iv.T-iv.Seconds/2-shift, iv) {
				return
			}
		}
	}
}

// timeChart returns an empty chart over res's time: its axis, its length and
// its markers.
func timeChart(res *loadtest.Result, title, yLabel string) Chart {
	shift, label := timeAxis(res)
	return Chart{Title: title, XLabel: label, YLabel: yLabel, XUnit: "s", XStart: -shift, XMax: runEnd(res) - shift,
		Markers: saleMarkers(res)}
}

// saleMarkers marks the time charts: a drop's T0, and the sell-out: one
// SKU's, or when all of several SKUs ran out, the last of them.
func saleMarkers(res *loadtest.Result) []Marker {
	shift, _ := timeAxis(res)
	var out []Marker
	at := func(secs float64) string { return fmtDur(secs) }
	if res.Drop != nil {
		out = append(out, Marker{At: 0, Label: "T0: the sale starts"})
		at = func(secs float64) string { return fromT0(secs - shift) }
	}
	if len(res.SoldOut) == 0 {
		return out
	}
	if len(res.SoldOut) == len(res.SKUs) {
		last := res.SoldOut[len(res.SoldOut)-1]
		label := fmt.Sprintf("sold out at %s", at(last.At))
		if len(res.SKUs) > 1 {
			label = fmt.Sprintf("all %d SKUs sold out at %s", len(res.SKUs), at(last.At))
		}
		return append(out, Marker{At: last.At - shift, Label: label})
	}
	first := res.SoldOut[0]
	return append(out, Marker{At: first.At - shift, Label: fmt.Sprintf("%s sold out at %s", first.SKU, at(first.At))})
}

// answersChart stacks the answers per second by kind.
func answersChart(res *loadtest.Result) Chart {
	kinds := map[string]loadtest.Answer{}
	for _, a := range res.Answers {
		kinds[a.Answer.String()] = a.Answer
	}
	for _, iv := range res.Series {
		for k := range iv.Codes {
			if _, ok := kinds[k]; !ok {
				kinds[k] = loadtest.ParseAnswer(k)
			}
		}
	}
	order := make([]loadtest.Answer, 0, len(kinds))
	for _, a := range kinds {
		order = append(order, a)
	}
	slices.SortFunc(order, func(x, y loadtest.Answer) int { return answerRank(x) - answerRank(y) })
	c := timeChart(res, "Answers per second, by kind (stacked)", "answers per second")
	c.Stacked = true
	for _, a := range order {
		l := Line{Name: a.String(), Color: answerColor(a)}
		for x, iv := range buckets(res) {
			if iv.Seconds > 0 {
				l.Points = append(l.Points, [2]float64{x, float64(iv.Codes[a.String()]) / iv.Seconds})
			}
		}
		c.Lines = append(c.Lines, l)
	}
	return c
}

// answerRank orders the answers as Kinds orders their kinds, then by status.
func answerRank(a loadtest.Answer) int {
	k := loadtest.KindOf(a)
	for i, kind := range loadtest.Kinds() {
		if k == kind {
			return 1000*i + a.Status
		}
	}
	return 1000 * len(loadtest.Kinds())
}

// stockChart follows the stock left, per SKU from the client's 201s when
// the run has few SKUs, else the total the server reported.
func stockChart(res *loadtest.Result) Chart {
	c := timeChart(res, "Stock left", "units")
	shift, _ := timeAxis(res)
	if len(res.Series) > 0 && len(res.Series[0].SKUStock) > 0 {
		for s := range res.Series[0].SKUStock {
			name := fmt.Sprint(s)
			if s < len(res.SKUs) {
				name = res.SKUs[s]
			}
			l := Line{Name: name, Points: [][2]float64{{-shift, float64(res.Config.Scenario.Stock)}}}
			for i, iv := range res.Series {
				if res.Charted(i) && s < len(iv.SKUStock) {
					l.Points = append(l.Points, [2]float64{iv.T - shift, float64(iv.SKUStock[s])})
				}
			}
			c.Lines = append(c.Lines, l)
		}
		return c
	}
	l := Line{Name: "all SKUs (read from the server)"}
	for i, iv := range res.Series {
		if res.Charted(i) && iv.StockLeft >= 0 {
			l.Points = append(l.Points, [2]float64{iv.T - shift, float64(iv.StockLeft)})
		}
	}
	c.Lines = []Line{l}
	return c
}

// timeCharts returns throughput and latency percentiles over time.
func timeCharts(res *loadtest.Result) (Chart, Chart) {
	orders := Line{Name: "orders/s", Color: "#2ca02c"}
	answers := Line{Name: "answers/s", Color: "#1f77b4"}
	target := Line{Name: "target rate (stages)", Color: "#555", Dashed: true}
	p50, p90, p99, pmax := Line{Name: "p50"}, Line{Name: "p90"}, Line{Name: "p99"}, Line{Name: "max"}
	for x, iv := range buckets(res) {
		orders.Points = append(orders.Points, [2]float64{x, iv.OrdersPerS})
		answers.Points = append(answers.Points, [2]float64{x, iv.AnswersPerS})
		if res.Mode == "open" && len(res.Config.Stages) > 0 {
			target.Points = append(target.Points, [2]float64{iv.T, iv.Target})
		}
		if iv.Answers > 0 {
			p50.Points = append(p50.Points, [2]float64{x, iv.P50})
			p90.Points = append(p90.Points, [2]float64{x, iv.P90})
			p99.Points = append(p99.Points, [2]float64{x, iv.P99})
			pmax.Points = append(pmax.Points, [2]float64{x, iv.Max})
		}
	}
	lines := []Line{orders, answers}
	if len(target.Points) > 0 {
		lines = append(lines, target)
	}
	bucket := bucketName(res)
	tp := timeChart(res, "Throughput (per "+bucket+" bucket, as a rate per second)", "per second")
	tp.Lines = lines
	title := "Latency percentiles per " + bucket + " bucket"
	if res.Drop != nil {
		title += ": orders"
	}
	lat := timeChart(res, title, "ms (log)")
	lat.Lines, lat.LogY = []Line{p50, p90, p99, pmax}, true
	return tp, lat
}

// rampChart shows the closed loop's active clients as the stages ramp them.
func rampChart(res *loadtest.Result) Chart {
	l := Line{Name: "active clients", Color: "#555", Points: [][2]float64{{0, 0}}}
	for i, iv := range res.Series {
		if res.Charted(i) {
			l.Points = append(l.Points, [2]float64{iv.T, iv.Target})
		}
	}
	c := timeChart(res, "Clients (stages "+stagesString(res.Config.Stages)+")", "clients")
	c.Lines = []Line{l}
	return c
}

// distChart is the latency distribution by percentile; in the open loop the
// latency from the intended send time next to the service time.
func distChart(res *loadtest.Result) Chart {
	c := Chart{Title: "Latency distribution", XLabel: "percentile", YLabel: "ms (log)", LogY: true, XTicks: NinesTicks}
	if res.Mode != "closed" && len(res.ServiceDist) > 0 {
		c.Title = "Latency distribution: from the intended send time, and service time"
		svc := distLine(res.ServiceDist, "service time (from the actual send)")
		svc.Color = "#9467bd"
		c.Lines = []Line{DistLine(res, "from intended send time (what users wait)"), svc}
		return c
	}
	c.Lines = []Line{DistLine(res, "")}
	return c
}

// Charts returns the charts of one run: answers by kind, stock left,
// throughput, the clients of a closed-loop ramp, latency percentiles over
// time and the latency distribution. A drop's report opens with its own
// (answers by kind, the product page beside the orders: dropCharts); Charts
// gives the rest: stock left, the orders' latency over time and their
// distribution.
func Charts(res *loadtest.Result) []template.HTML {
	tp, lat := timeCharts(res)
	if res.Drop != nil {
		return []template.HTML{stockChart(res).SVG(), lat.SVG(), distChart(res).SVG()}
	}
	charts := []Chart{answersChart(res)}
	if !res.Config.NoServer {
		charts = append(charts, stockChart(res))
	}
	charts = append(charts, tp)
	if res.Mode == "closed" && len(res.Config.Stages) > 0 {
		charts = append(charts, rampChart(res))
	}
	charts = append(charts, lat, distChart(res))
	out := make([]template.HTML, len(charts))
	for i, c := range charts {
		out[i] = c.SVG()
	}
	return out
}

// DistLine is res's latency distribution as a chart line.
func DistLine(res *loadtest.Result, name string) Line {
	if name == "" {
		name = "latency"
	}
	return distLine(res.Dist, name)
}

func distLine(dist []loadtest.DistPoint, name string) Line {
	l := Line{Name: name}
	for _, d := range dist {
		l.Points = append(l.Points, [2]float64{nines(d.Percentile), d.LatencyMs})
	}
	return l
}

// Page is the content of an HTML report.
type Page struct {
	Title string
	// Table is a preformatted text table shown at the top (compare).
	Table string
	// Summary charts shown above the runs (compare).
	Summary []template.HTML
	Runs    []*loadtest.Result
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"charts":     Charts,
	"dropCharts": dropCharts,
	"tiles":      DropTiles,
	"bad":        badRun,
	"headline":   Headline,
	"facts":      Facts,
	"audit":      func(r *loadtest.Result) string { var b strings.Builder; WriteAudit(&b, r.Audit); return b.String() },
	"summary":    func(r *loadtest.Result) string { var b strings.Builder; WriteSummary(&b, r); return b.String() },
	"share": func(n, of int64) string {
		if of == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
	},
	"kind":      answerKind,
	"color":     answerColor,
	"thousands": thousands,
}).Parse(reportHTML))

// badRun reports whether res's headline tells of a failure: a failed audit,
// a failed threshold, or errors (5xx or no answer).
func badRun(res *loadtest.Result) bool {
	if res.Audit != nil && !res.Audit.OK {
		return true
	}
	for _, t := range res.Thresholds {
		if !t.OK {
			return true
		}
	}
	_, _, errs, _ := totals(res)
	if res.Page != nil {
		errs += res.Page.Errors
	}
	return errs > 0
}

// answerKind names what an answer means for the report's table.
func answerKind(a loadtest.Answer) string {
	switch {
	case a.Status == 201:
		return "order"
	case a.IsRefusal():
		return "business refusal"
	case a.IsError():
		return "error"
	case a.Status == 0:
		return "not counted"
	default:
		return "client error"
	}
}

// WriteHTML writes rep as a self-contained HTML page.
func WriteHTML(w io.Writer, rep Page) error {
	if err := reportTemplate.Execute(w, rep); err != nil {
		return fmt.Errorf("report: render HTML report: %w", err)
	}
	return nil
}

// WriteHTMLFile writes rep to path.
func WriteHTMLFile(path string, rep Page) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: create HTML report: %w", err)
	}
	if err := WriteHTML(f, rep); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: write HTML report: %w", err)
	}
	return nil
}
