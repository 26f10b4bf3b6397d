package loadtest

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"slices"
	"strings"
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

// answerColor gives each kind of answer a color that says what it is: green
// orders, orange and yellow business refusals, red errors.
func answerColor(a Answer) string {
	switch {
	case a.Status == 201:
		return "#2ca02c"
	case a.IsRefusal() && a.Code == CodeSoldOut:
		return "#ff7f0e"
	case a.IsRefusal():
		return "#f2c744"
	case a.Status >= 500:
		return "#d62728"
	case a.Status == 0:
		return "#7b1113"
	default:
		return "#9467bd"
	}
}

// runEnd is the end of res's last charted interval, where its time axes end.
func runEnd(res *Result) float64 {
	for i := len(res.Series) - 1; i >= 0; i-- {
		if charted(res, i) {
			return res.Series[i].T
		}
	}
	return 0
}

// charted reports whether interval i of res is drawn: a last interval much
// shorter than a bucket is left out, its rates would be noise.
func charted(res *Result, i int) bool {
	iv := res.Series[i]
	bucket := res.BucketSeconds
	if bucket <= 0 {
		bucket = 1
	}
	return !(i > 0 && i == len(res.Series)-1 && iv.Seconds < sliver*bucket)
}

// saleMarkers marks the sell-out on the time charts: one SKU's, or when all
// of several SKUs ran out, the last of them.
func saleMarkers(res *Result) []Marker {
	if len(res.SoldOut) == 0 {
		return nil
	}
	if len(res.SoldOut) == len(res.SKUs) {
		last := res.SoldOut[len(res.SoldOut)-1]
		label := fmt.Sprintf("sold out at %s", fmtDur(last.At))
		if len(res.SKUs) > 1 {
			label = fmt.Sprintf("all %d SKUs sold out at %s", len(res.SKUs), fmtDur(last.At))
		}
		return []Marker{{At: last.At, Label: label}}
	}
	first := res.SoldOut[0]
	return []Marker{{At: first.At, Label: fmt.Sprintf("%s sold out at %s", first.SKU, fmtDur(first.At))}}
}

// answersChart stacks the answers per second by kind.
func answersChart(res *Result) Chart {
	kinds := map[string]Answer{}
	for _, a := range res.Answers {
		kinds[a.Answer.String()] = a.Answer
	}
	for _, iv := range res.Series {
		for k := range iv.Codes {
			if _, ok := kinds[k]; !ok {
				kinds[k] = parseAnswer(k)
			}
		}
	}
	order := make([]Answer, 0, len(kinds))
	for _, a := range kinds {
		order = append(order, a)
	}
	slices.SortFunc(order, func(x, y Answer) int { return answerRank(x) - answerRank(y) })
	c := Chart{Title: "Answers per second, by kind (stacked)", XLabel: "time since start", YLabel: "answers per second",
		Stacked: true, XUnit: "s", XMax: runEnd(res), Markers: saleMarkers(res)}
	for _, a := range order {
		l := Line{Name: a.String(), Color: answerColor(a)}
		for i, iv := range res.Series {
			if charted(res, i) && iv.Seconds > 0 {
				l.Points = append(l.Points, [2]float64{iv.T - iv.Seconds/2, float64(iv.Codes[a.String()]) / iv.Seconds})
			}
		}
		c.Lines = append(c.Lines, l)
	}
	return c
}

// answerRank orders the kinds of answers: orders, refusals, other 4xx, 5xx,
// transport failures.
func answerRank(a Answer) int {
	switch {
	case a.Status == 201:
		return 0
	case a.IsRefusal():
		return 100 + len(a.Code)
	case a.Status == 0:
		return 1000
	default:
		return a.Status
	}
}

// parseAnswer is Answer.String's inverse.
func parseAnswer(s string) Answer {
	var a Answer
	if n, err := fmt.Sscanf(s, "%d %s", &a.Status, &a.Code); n >= 1 && (err == nil || n == 1) {
		return a
	}
	return Answer{Code: s}
}

// stockChart follows the stock left, per SKU from the client's 201s when
// the run has few SKUs, else the total the server reported.
func stockChart(res *Result) Chart {
	c := Chart{Title: "Stock left", XLabel: "time since start", YLabel: "units", XUnit: "s", XMax: runEnd(res), Markers: saleMarkers(res)}
	if len(res.Series) > 0 && len(res.Series[0].SKUStock) > 0 {
		for s := range res.Series[0].SKUStock {
			name := fmt.Sprint(s)
			if s < len(res.SKUs) {
				name = res.SKUs[s]
			}
			l := Line{Name: name, Points: [][2]float64{{0, float64(res.Config.Scenario.Stock)}}}
			for i, iv := range res.Series {
				if charted(res, i) && s < len(iv.SKUStock) {
					l.Points = append(l.Points, [2]float64{iv.T, float64(iv.SKUStock[s])})
				}
			}
			c.Lines = append(c.Lines, l)
		}
		return c
	}
	l := Line{Name: "all SKUs (read from the server)"}
	for i, iv := range res.Series {
		if charted(res, i) && iv.StockLeft >= 0 {
			l.Points = append(l.Points, [2]float64{iv.T, float64(iv.StockLeft)})
		}
	}
	c.Lines = []Line{l}
	return c
}

// timeCharts returns throughput and latency percentiles over time.
func timeCharts(res *Result) (Chart, Chart) {
	orders := Line{Name: "orders/s", Color: "#2ca02c"}
	answers := Line{Name: "answers/s", Color: "#1f77b4"}
	target := Line{Name: "target rate (stages)", Color: "#555", Dashed: true}
	p50, p90, p99, pmax := Line{Name: "p50"}, Line{Name: "p90"}, Line{Name: "p99"}, Line{Name: "max"}
	for i, iv := range res.Series {
		if !charted(res, i) {
			continue
		}
		x := iv.T - iv.Seconds/2
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
	bucket := fmtDur(res.BucketSeconds)
	tp := Chart{Title: "Throughput (per " + bucket + " bucket, as a rate per second)", XLabel: "time since start",
		YLabel: "per second", Lines: lines, XUnit: "s", XMax: runEnd(res), Markers: saleMarkers(res)}
	lat := Chart{Title: "Latency percentiles per " + bucket + " bucket", XLabel: "time since start", YLabel: "ms (log)",
		Lines: []Line{p50, p90, p99, pmax}, LogY: true, XUnit: "s", XMax: runEnd(res), Markers: saleMarkers(res)}
	return tp, lat
}

// rampChart shows the closed loop's active clients as the stages ramp them.
func rampChart(res *Result) Chart {
	l := Line{Name: "active clients", Color: "#555", Points: [][2]float64{{0, 0}}}
	for i, iv := range res.Series {
		if charted(res, i) {
			l.Points = append(l.Points, [2]float64{iv.T, iv.Target})
		}
	}
	return Chart{Title: "Clients (stages " + stagesString(res.Config.Stages) + ")", XLabel: "time since start",
		YLabel: "clients", Lines: []Line{l}, XUnit: "s", XMax: runEnd(res), Markers: saleMarkers(res)}
}

// distChart is the latency distribution by percentile; in the open loop the
// latency from the intended send time next to the service time.
func distChart(res *Result) Chart {
	c := Chart{Title: "Latency distribution", XLabel: "percentile", YLabel: "ms (log)", LogY: true, XTicks: NinesTicks}
	if res.Mode == "open" && len(res.ServiceDist) > 0 {
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
// time and the latency distribution.
func Charts(res *Result) []template.HTML {
	tp, lat := timeCharts(res)
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
func DistLine(res *Result, name string) Line {
	if name == "" {
		name = "latency"
	}
	return distLine(res.Dist, name)
}

func distLine(dist []DistPoint, name string) Line {
	l := Line{Name: name}
	for _, d := range dist {
		l.Points = append(l.Points, [2]float64{nines(d.Percentile), d.LatencyMs})
	}
	return l
}

// Report is the content of an HTML report.
type Report struct {
	Title string
	// Table is a preformatted text table shown at the top (compare).
	Table string
	// Summary charts shown above the runs (compare).
	Summary []template.HTML
	Runs    []*Result
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"charts":   Charts,
	"headline": Headline,
	"facts":    Facts,
	"audit":    func(r *Result) string { var b strings.Builder; WriteAudit(&b, r.Audit); return b.String() },
	"summary":  func(r *Result) string { var b strings.Builder; WriteSummary(&b, r); return b.String() },
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

// answerKind names what an answer means for the report's table.
func answerKind(a Answer) string {
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
func WriteHTML(w io.Writer, rep Report) error {
	if err := reportTemplate.Execute(w, rep); err != nil {
		return fmt.Errorf("loadtest: render HTML report: %w", err)
	}
	return nil
}

// WriteHTMLFile writes rep to path.
func WriteHTMLFile(path string, rep Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("loadtest: create HTML report: %w", err)
	}
	if err := WriteHTML(f, rep); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("loadtest: write HTML report: %w", err)
	}
	return nil
}
