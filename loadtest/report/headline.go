package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/flashorder/flashorder/loadtest"
)

// totals adds up the whole time series, warmup included.
func totals(res *loadtest.Result) (orders, refused, errs, answers int64) {
	for _, iv := range res.Series {
		orders += iv.Orders
		refused += iv.Refused
		errs += iv.Errors
		answers += iv.Answers
	}
	return orders, refused, errs, answers
}

// Headline tells the run's story in one sentence: how long the stock lasted
// and how many orders it sold, or, when it did not run out, the orders and
// what is left; a drop's also the orders before the start and the first
// order against starts_at. Business refusals are not errors.
func Headline(res *loadtest.Result) string {
	if res.Drop != nil {
		return dropHeadline(res)
	}
	orders, refused, errs, answers := totals(res)
	ran := 0.0
	if n := len(res.Series); n > 0 {
		ran = res.Series[n-1].T
	}
	errText := fmt.Sprintf("%s errors (5xx or no answer)", thousands(errs))
	if res.Config.NoServer {
		return fmt.Sprintf("%s answers in %s (%s/s); %s.", thousands(answers), fmtDur(ran), (rateOf(answers, ran)), errText)
	}
	sc := res.Config.Scenario
	units := sc.Stock * int64(len(res.SKUs))
	stock := fmt.Sprintf("The stock (%s units)", thousands(units))
	if len(res.SKUs) > 1 {
		stock = fmt.Sprintf("The stock of %d SKUs (%s units)", len(res.SKUs), thousands(units))
	}
	if len(res.SoldOut) > 0 && len(res.SoldOut) == len(res.SKUs) {
		lasted := res.SoldOut[len(res.SoldOut)-1].At
		return fmt.Sprintf("%s lasted %s: %s orders sold (%s orders/s while it lasted); %s requests refused (sold out or over the per-user limit); %s.",
			stock, fmtDur(lasted), thousands(orders), (rateOf(orders, lasted)), thousands(refused), errText)
	}
	var left []string
	if len(res.SoldOut) > 0 {
		left = append(left, fmt.Sprintf("%d of %d SKUs sold out", len(res.SoldOut), len(res.SKUs)))
	}
	if n := len(res.Series); n > 0 && res.Series[n-1].StockLeft >= 0 {
		left = append(left, fmt.Sprintf("%s of %s units left", thousands(res.Series[n-1].StockLeft), thousands(units)))
	}
	tail := ""
	if len(left) > 0 {
		tail = "; " + strings.Join(left, ", ")
	}
	return fmt.Sprintf("%s orders in %s (%s orders/s)%s; %s refused; %s.", thousands(orders), fmtDur(ran),
		(rateOf(orders, ran)), tail, thousands(refused), errText)
}

// rateOf renders n per secs seconds: whole numbers from 100 up.
func rateOf(n int64, secs float64) string {
	if secs <= 0 {
		return "0"
	}
	return rate(float64(n) / secs)
}

// rate renders a rate per second: whole numbers from 100 up, one decimal
// below.
func rate(r float64) string {
	if r >= 100 {
		return thousands(int64(math.Round(r)))
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

// fmtDur renders seconds for people: "620 ms", "3.4 s", "95 s".
func fmtDur(secs float64) string {
	switch {
	case secs < 1:
		return fmt.Sprintf("%.0f ms", secs*1000)
	case secs < 10:
		return fmt.Sprintf("%.2f s", secs)
	default:
		return fmt.Sprintf("%.1f s", secs)
	}
}

// Fact is one row of the report's summary table.
type Fact struct{ Name, Value string }

// Facts are the summary table of a run.
func Facts(res *loadtest.Result) []Fact {
	cfg := res.Config
	load := fmt.Sprintf("closed loop, %d clients", cfg.Concurrency)
	if res.Mode == "open" {
		load = fmt.Sprintf("open loop, %s requests/s offered, at most %d in flight", rate(res.OfferedRate), cfg.Concurrency)
	}
	if len(cfg.Stages) > 0 {
		load += ", stages " + stagesString(cfg.Stages)
	}
	measured := fmt.Sprintf("%s after %s warmup; %s buckets", fmtDur(res.Seconds), fmtDur(cfg.Warmup.Seconds()), bucketName(res))
	soldOutAt := fmtDur
	if d := res.Drop; d != nil {
		load = dropLoad(res)
		measured = fmt.Sprintf("%s: the %s lead and %s after T0; %s buckets", fmtDur(res.Seconds), fmtDur(d.Lead),
			fmtDur(res.Seconds-d.Lead), bucketName(res))
		soldOutAt = func(secs float64) string { return fromT0(secs - d.Lead) }
	}
	l := res.Latency
	facts := []Fact{
		{"target", strings.Join(cfg.URLs, ", ")},
		{"load", load},
		{"scenario", cfg.Scenario.String()},
		{"measured", measured},
		{"requests", fmt.Sprintf("%s answered, %s/s", thousands(res.Requests), rate(res.AchievedRate))},
		{"new orders", fmt.Sprintf("%s (%s/s over the measured time)", thousands(res.Orders), rate(res.OrdersPerSec))},
		{"business refusals", thousands(res.Refused) + " (sold_out, limit_exceeded, not_started, sale_ended: not errors)"},
		{"errors", thousands(res.Errors) + " (5xx and transport failures)"},
		{"latency", fmt.Sprintf("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms", l.P50, l.P90, l.P99, l.P999, l.Max)},
	}
	if s := res.ServiceLatency; s != nil {
		facts = append(facts, Fact{"service time", fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.2f ms (from the actual send)", s.P50, s.P99, s.Max)},
			Fact{"late sends", fmt.Sprintf("%s sent over %s late, %s never sent, max lag %.1f ms", thousands(res.Late), cfg.LateThreshold, thousands(res.NotSent), res.MaxLagMs)})
	}
	for _, so := range res.SoldOut {
		facts = append(facts, Fact{"sold out", fmt.Sprintf("%s at %s", so.SKU, soldOutAt(so.At))})
	}
	return facts
}

func stagesString(st []loadtest.Stage) string {
	parts := make([]string, len(st))
	for i, s := range st {
		parts[i] = fmt.Sprintf("%s:%s", s.Duration, num(s.Target))
	}
	return strings.Join(parts, ",")
}

const reportHTML = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222}
h1{margin:0 0 .3em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
.headline{font-size:1.25em;background:#eef6ee;border-left:6px solid #2ca02c;padding:.6em 1em}
.cols{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:.9em;height:.9em;margin-right:.4em;vertical-align:middle}
pre{background:#f6f6f6;padding:1em;overflow-x:auto}
.audit{border:2px solid #2ca02c;background:#f3faf3;white-space:pre-wrap}
.audit.fail{border-color:#b00;background:#fff0f0;color:#900;font-weight:bold}
.fail{color:#b00;font-weight:bold}.ok{color:#2a7d2a;font-weight:bold}
svg.chart{display:block;margin:1.2em 0;max-width:100%}
.headline.bad{background:#fff0f0;border-left-color:#b00}
.tiles{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.tile{border:1px solid #cfd8cf;border-left:6px solid #2ca02c;padding:.4em .9em;min-width:10em;background:#fafcfa}
.tile.bad{border-left-color:#b00;background:#fff0f0}
.tn{font-size:.85em;color:#555}.tv{font-size:1.5em;font-weight:bold;font-variant-numeric:tabular-nums}.tile.bad .tv{color:#b00}
.tnote{font-size:.8em;color:#666}
</style></head>
<body><h1>{{.Title}}</h1>
{{if .Table}}<pre>{{.Table}}</pre>{{end}}
{{range .Summary}}<div>{{.}}</div>{{end}}
{{range .Runs}}<section class="run">
<h2>{{if .Label}}{{.Label}}: {{end}}run {{.RunID}}</h2>
<p class="headline{{if bad .}} bad{{end}}">{{headline .}}</p>
{{if .Drop}}<div class="tiles">{{range tiles .}}<div class="tile{{if .Bad}} bad{{end}}"><div class="tn">{{.Name}}</div><div class="tv">{{.Value}}</div><div class="tnote">{{.Note}}</div></div>{{end}}</div>
{{range dropCharts .}}{{.}}{{end}}{{end}}
<div class="cols">
<table class="summary">{{range facts .}}<tr><th>{{.Name}}</th><td>{{.Value}}</td></tr>{{end}}</table>
<table class="answers"><tr><th>answer</th><th>kind</th><th>count</th><th>share</th></tr>
{{$n := .Requests}}{{range .Answers}}<tr><td><span class="swatch" style="background:{{color .Answer}}"></span>{{.Answer.String}}</td><td>{{kind .Answer}}</td><td class="n">{{thousands .Count}}</td><td class="n">{{share .Count $n}}</td></tr>{{end}}
</table>
{{if .Thresholds}}<table class="thresholds"><tr><th>threshold</th><th>actual</th><th></th></tr>
{{range .Thresholds}}<tr><td>{{.Expr}}</td><td>{{.Actual}}</td><td>{{if .OK}}<span class="ok">pass</span>{{else}}<span class="fail">FAIL</span>{{end}}</td></tr>{{end}}
</table>{{end}}
</div>
<h3>Audit</h3>
<pre class="audit{{if .Audit}}{{if not .Audit.OK}} fail{{end}}{{end}}">{{audit .}}</pre>
{{range charts .}}{{.}}{{end}}
<details><summary>Text summary (as printed)</summary><pre>{{summary .}}</pre></details>
</section>
{{end}}
<p>Generated by orderbench. Self-contained: no scripts, no external resources.</p>
</body></html>
`
