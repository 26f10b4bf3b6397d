package loadtest

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"strings"
)

// Line is one series of a chart.
type Line struct {
	Name   string
	Color  string
	Points [][2]float64
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

const (
	chartW, chartH         = 760.0, 300.0
	padL, padR, padT, padB = 70.0, 150.0, 30.0, 40.0
)

// LineChart renders lines as an inline SVG. With logY the y axis is
// logarithmic (values <= 0 are drawn at the bottom). xTicks, when set, labels
// the x axis at those values.
func LineChart(title, xLabel, yLabel string, lines []Line, logY bool, xTicks map[float64]string) template.HTML {
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, p := range l.Points {
			minX, maxX = math.Min(minX, p[0]), math.Max(maxX, p[0])
			y := p[1]
			if logY && y <= 0 {
				continue
			}
			minY, maxY = math.Min(minY, y), math.Max(maxY, y)
		}
	}
	if math.IsInf(minX, 0) || math.IsInf(minY, 0) {
		return template.HTML(fmt.Sprintf(`<p>%s: no data</p>`, template.HTMLEscapeString(title)))
	}
	if !logY {
		minY = 0
	}
	if maxX == minX {
		maxX = minX + 1
	}
	ty := func(y float64) float64 { return y }
	if logY {
		ty = math.Log10
		minY = math.Pow(10, math.Floor(math.Log10(minY)))
		maxY = math.Pow(10, math.Ceil(math.Log10(maxY)))
	}
	if maxY <= minY {
		maxY = minY + 1
	}
	pw, ph := chartW-padL-padR, chartH-padT-padB
	sx := func(x float64) float64 { return padL + (x-minX)/(maxX-minX)*pw }
	sy := func(y float64) float64 {
		if logY && y <= 0 {
			y = minY
		}
		return padT + ph - (ty(y)-ty(minY))/(ty(maxY)-ty(minY))*ph
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%.0f" y="16" font-size="13" font-weight="bold">%s</text>`, padL, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, padL, padT, pw, ph)
	// y ticks
	var yt []float64
	if logY {
		for v := minY; v <= maxY*1.0001; v *= 10 {
			yt = append(yt, v)
		}
	} else {
		for i := 0; i <= 5; i++ {
			yt = append(yt, minY+(maxY-minY)*float64(i)/5)
		}
	}
	for _, v := range yt {
		y := sy(v)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, padL, padL+pw, y, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, padL-4, y+4, num(v))
	}
	// x ticks
	if xTicks != nil {
		for v, label := range xTicks {
			if v < minX || v > maxX {
				continue
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, sx(v), padT+ph+14, template.HTMLEscapeString(label))
		}
	} else {
		for i := 0; i <= 5; i++ {
			v := minX + (maxX-minX)*float64(i)/5
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, sx(v), padT+ph+14, num(v))
		}
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, padL+pw/2, chartH-6, template.HTMLEscapeString(xLabel))
	fmt.Fprintf(&b, `<text transform="translate(14,%.1f) rotate(-90)" text-anchor="middle">%s</text>`, padT+ph/2, template.HTMLEscapeString(yLabel))
	for i, l := range lines {
		color := l.Color
		if color == "" {
			color = palette[i%len(palette)]
		}
		var pts []string
		for _, p := range l.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(p[0]), sy(p[1])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, color, strings.Join(pts, " "))
		if len(l.Points) == 1 {
			fmt.Fprintf(&b, `<circle cx="%s" r="3" fill="%s"/>`, strings.Replace(pts[0], ",", `" cy="`, 1), color)
		}
		ly := padT + 12 + float64(i)*16
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`, padL+pw+10, padL+pw+28, ly-4, ly-4, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, padL+pw+32, ly, template.HTMLEscapeString(l.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// BarChart renders one bar per label as an inline SVG.
func BarChart(title, yLabel string, labels []string, values []float64) template.HTML {
	maxV := 0.0
	for _, v := range values {
		maxV = math.Max(maxV, v)
	}
	if maxV == 0 {
		maxV = 1
	}
	pw, ph := chartW-padL-40, chartH-padT-padB
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%.0f" y="16" font-size="13" font-weight="bold">%s</text>`, padL, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text transform="translate(14,%.1f) rotate(-90)" text-anchor="middle">%s</text>`, padT+ph/2, template.HTMLEscapeString(yLabel))
	n := float64(len(labels))
	for i, l := range labels {
		bw := pw / n * 0.7
		x := padL + pw/n*float64(i) + pw/n*0.15
		h := values[i] / maxV * ph
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, x, padT+ph-h, bw, h, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x+bw/2, padT+ph-h-4, num(values[i]))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x+bw/2, padT+ph+14, template.HTMLEscapeString(l))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#999"/>`, padL, padL+pw, padT+ph, padT+ph)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// nines maps a percentile to the x of the classic latency-by-percentile plot:
// 90 -> 1, 99 -> 2, 99.9 -> 3.
func nines(q float64) float64 {
	if q >= 100 {
		return 5.5
	}
	return math.Min(-math.Log10(1-q/100), 5.5)
}

var ninesTicks = map[float64]string{0: "0%", 1: "90%", 2: "99%", 3: "99.9%", 4: "99.99%", 5: "99.999%", 5.5: "max"}

// Charts returns the three charts of one run: throughput over time, latency
// percentiles over time, and the latency distribution.
func Charts(res *Result) []template.HTML {
	var orders, answers, p50, p90, p99, pmax Line
	orders.Name, answers.Name = "orders/s", "answers/s"
	p50.Name, p90.Name, p99.Name, pmax.Name = "p50", "p90", "p99", "max"
	for i, iv := range res.Series {
		if i > 0 && i == len(res.Series)-1 && iv.Seconds < sliver {
			break
		}
		orders.Points = append(orders.Points, [2]float64{iv.T, iv.OrdersPerS})
		answers.Points = append(answers.Points, [2]float64{iv.T, iv.AnswersPerS})
		if iv.Answers > 0 {
			p50.Points = append(p50.Points, [2]float64{iv.T, iv.P50})
			p90.Points = append(p90.Points, [2]float64{iv.T, iv.P90})
			p99.Points = append(p99.Points, [2]float64{iv.T, iv.P99})
			pmax.Points = append(pmax.Points, [2]float64{iv.T, iv.Max})
		}
	}
	return []template.HTML{
		LineChart("Throughput", "seconds since start", "per second", []Line{orders, answers}, false, nil),
		LineChart("Latency percentiles per second", "seconds since start", "ms (log)", []Line{p50, p90, p99, pmax}, true, nil),
		LineChart("Latency distribution (measured time)", "percentile", "ms (log)", []Line{DistLine(res, "")}, true, ninesTicks),
	}
}

// DistLine is res's latency distribution as a chart line.
func DistLine(res *Result, name string) Line {
	l := Line{Name: name}
	if l.Name == "" {
		l.Name = "latency"
	}
	for _, d := range res.Dist {
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
	"charts":  Charts,
	"summary": func(r *Result) string { var b strings.Builder; WriteSummary(&b, r); return b.String() },
}).Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1000px}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
h2{border-bottom:1px solid #ccc}.fail{color:#b00;font-weight:bold}</style></head>
<body><h1>{{.Title}}</h1>
{{if .Table}}<pre>{{.Table}}</pre>{{end}}
{{range .Summary}}<div>{{.}}</div>{{end}}
{{range .Runs}}<h2>{{if .Label}}{{.Label}}{{else}}run {{.RunID}}{{end}}</h2>
{{if .Audit}}{{if not .Audit.OK}}<p class="fail">AUDIT FAILED</p>{{end}}{{end}}
<pre>{{summary .}}</pre>
{{range charts .}}<div>{{.}}</div>{{end}}
{{end}}
<p>Generated by orderbench. Self-contained: no scripts, no external resources.</p>
</body></html>
`))

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
