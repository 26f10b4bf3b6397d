package report

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// Line is one series of a chart.
type Line struct {
	Name   string
	Color  string
	Points [][2]float64
	// Dashed draws the line dashed (targets, references).
	Dashed bool
}

// Marker is a labelled vertical line at X (an event such as a sell-out) or,
// in Chart.Refs and BarChart, a horizontal reference line at that value.
type Marker struct {
	At    float64
	Label string
}

// Chart is an inline SVG chart: lines, or stacked areas, on a linear or
// logarithmic y axis, with round ticks. It scales to the page's width.
type Chart struct {
	Title, XLabel, YLabel string
	Lines                 []Line
	// Stacked draws the lines as areas stacked on each other; their points
	// must share the same x values.
	Stacked bool
	LogY    bool
	// XTicks, when set, labels the x axis at those values instead of round
	// numbers; XUnit is appended to round x labels ("s").
	XTicks map[float64]string
	XUnit  string
	// XMax, when larger than the data's, ends the x axis there, so that
	// the time charts of one run share their scale. XStart is where a time
	// axis (XUnit "s") starts: 0, the start of the run, by default.
	XMax   float64
	XStart float64
	// Markers are vertical event lines; Refs horizontal reference lines.
	Markers []Marker
	Refs    []Marker
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// barPalette colors bars; no red, which the reports keep for errors and
// failures.
var barPalette = []string{"#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#e377c2"}

// The drawing area, in the SVG's own units (the SVG scales to its container).
const (
	chartW, chartH         = 1200.0, 340.0
	padL, padR, padT, padB = 80.0, 30.0, 56.0, 44.0
)

// axes is a chart's scales.
type axes struct {
	minX, maxX, minY, maxY float64
	logY                   bool
}

func (a axes) sx(x float64) float64 {
	return padL + (x-a.minX)/(a.maxX-a.minX)*(chartW-padL-padR)
}

func (a axes) sy(y float64) float64 {
	ph := chartH - padT - padB
	if a.logY {
		y = math.Max(y, a.minY)
		return padT + ph - (math.Log10(y)-math.Log10(a.minY))/(math.Log10(a.maxY)-math.Log10(a.minY))*ph
	}
	return padT + ph - (y-a.minY)/(a.maxY-a.minY)*ph
}

// bounds returns the chart's data range, stacked sums included, and whether
// there is any data.
func (c Chart) bounds() (axes, bool) {
	a := axes{minX: math.Inf(1), maxX: math.Inf(-1), minY: math.Inf(1), maxY: math.Inf(-1), logY: c.LogY}
	var sums map[float64]float64
	if c.Stacked {
		sums = map[float64]float64{}
	}
	for _, l := range c.Lines {
		for _, p := range l.Points {
			a.minX, a.maxX = math.Min(a.minX, p[0]), math.Max(a.maxX, p[0])
			y := p[1]
			if c.Stacked {
				sums[p[0]] += y
				y = sums[p[0]]
			}
			if c.LogY && y <= 0 {
				continue
			}
			a.minY, a.maxY = math.Min(a.minY, y), math.Max(a.maxY, y)
		}
	}
	for _, r := range c.Refs {
		a.maxY = math.Max(a.maxY, r.At)
	}
	if c.XUnit == "s" {
		a.minX = c.XStart // time axes start at the start of the run
	}
	a.maxX = math.Max(a.maxX, c.XMax)
	for _, m := range c.Markers {
		a.maxX = math.Max(a.maxX, m.At) // an event at the very end is still shown
	}
	return a, !math.IsInf(a.minX, 0) && !math.IsInf(a.minY, 0)
}

// SVG renders the chart.
func (c Chart) SVG() template.HTML {
	a, ok := c.bounds()
	if !ok {
		return template.HTML(fmt.Sprintf(`<p class="nodata">%s: no data</p>`, template.HTMLEscapeString(c.Title)))
	}
	if a.maxX == a.minX {
		a.maxX = a.minX + 1
	}
	var yt []float64
	if c.LogY {
		a.minY = math.Pow(10, math.Floor(math.Log10(a.minY)))
		a.maxY = math.Pow(10, math.Ceil(math.Log10(a.maxY)))
		if a.maxY <= a.minY {
			a.maxY = a.minY * 10
		}
		yt = logTicks(a.minY, a.maxY)
	} else {
		a.minY = 0
		yt = niceTicks(0, math.Max(a.maxY, 1e-9), 5)
		a.maxY = yt[len(yt)-1]
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="100%%" font-family="sans-serif" font-size="13">`, chartW, chartH)
	fmt.Fprintf(&b, `<title>%s</title>`, template.HTMLEscapeString(c.Title))
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="16" font-weight="bold">%s</text>`, padL, template.HTMLEscapeString(c.Title))
	c.drawAxes(&b, a, yt)
	if c.Stacked {
		c.drawStacked(&b, a)
	} else {
		c.drawLines(&b, a)
	}
	c.drawMarkers(&b, a)
	c.drawLegend(&b)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// drawAxes draws the frame, the grid and the tick labels.
func (c Chart) drawAxes(b *strings.Builder, a axes, yt []float64) {
	pw, ph := chartW-padL-padR, chartH-padT-padB
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, padL, padT, pw, ph)
	labels := yLabels(yt, a.logY)
	for i, v := range yt {
		y := a.sy(v)
		fmt.Fprintf(b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e4e4e4"/>`, padL, padL+pw, y, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, padL-6, y+4, labels[i])
	}
	if c.XTicks != nil {
		for v, label := range c.XTicks {
			if v >= a.minX && v <= a.maxX {
				fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, a.sx(v), padT+ph+18, template.HTMLEscapeString(label))
			}
		}
	} else {
		for _, v := range niceTicks(a.minX, a.maxX, 10) {
			if v < a.minX-1e-9 || v > a.maxX+1e-9 {
				continue
			}
			x := a.sx(v)
			fmt.Fprintf(b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#f0f0f0"/>`, x, x, padT, padT+ph)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s%s</text>`, x, padT+ph+18, num(v), c.XUnit)
		}
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, padL+pw/2, chartH-6, template.HTMLEscapeString(c.XLabel))
	fmt.Fprintf(b, `<text transform="translate(18,%.1f) rotate(-90)" text-anchor="middle">%s</text>`, padT+ph/2, template.HTMLEscapeString(c.YLabel))
}

func (c Chart) color(i int) string {
	if c.Lines[i].Color != "" {
		return c.Lines[i].Color
	}
	return palette[i%len(palette)]
}

func (c Chart) drawLines(b *strings.Builder, a axes) {
	for i, l := range c.Lines {
		pts := make([]string, 0, len(l.Points))
		for _, p := range l.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", a.sx(p[0]), a.sy(p[1])))
		}
		dash := ""
		if l.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(b, `<polyline class="series" fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`, c.color(i), dash, strings.Join(pts, " "))
		if len(l.Points) == 1 {
			fmt.Fprintf(b, `<circle cx="%s" r="3" fill="%s"/>`, strings.Replace(pts[0], ",", `" cy="`, 1), c.color(i))
		}
	}
}

// drawStacked draws each line as an area on top of the ones before it.
func (c Chart) drawStacked(b *strings.Builder, a axes) {
	base := map[float64]float64{}
	for i, l := range c.Lines {
		if len(l.Points) == 0 {
			continue
		}
		top := make([]string, 0, len(l.Points))
		bottom := make([]string, 0, len(l.Points))
		for _, p := range l.Points {
			y0 := base[p[0]]
			bottom = append(bottom, fmt.Sprintf("%.1f,%.1f", a.sx(p[0]), a.sy(y0)))
			base[p[0]] = y0 + p[1]
			top = append(top, fmt.Sprintf("%.1f,%.1f", a.sx(p[0]), a.sy(y0+p[1])))
		}
		for j, k := 0, len(bottom)-1; j < k; j, k = j+1, k-1 {
			bottom[j], bottom[k] = bottom[k], bottom[j]
		}
		fmt.Fprintf(b, `<polygon class="series" fill="%s" fill-opacity="0.85" stroke="none" points="%s %s"/>`,
			c.color(i), strings.Join(top, " "), strings.Join(bottom, " "))
	}
}

// drawMarkers draws the vertical event lines and the horizontal references.
func (c Chart) drawMarkers(b *strings.Builder, a axes) {
	var shown []Marker
	for _, m := range c.Markers {
		if m.At < a.minX || m.At > a.maxX {
			continue
		}
		x := a.sx(m.At)
		fmt.Fprintf(b, `<line class="marker" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#000" stroke-width="1.5" stroke-dasharray="4 3"/>`,
			x, x, padT, chartH-padB)
		shown = append(shown, m)
	}
	// The labels over every line, one under the other, so that close events
	// stay legible; on the line's left when the right has no room.
	for i, m := range shown {
		x := a.sx(m.At)
		tx, anchor := x+5, "start"
		if x+5+7*float64(len(m.Label)) > chartW-padR {
			tx, anchor = x-5, "end"
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="%s" font-weight="bold" stroke="#fff" stroke-width="3" paint-order="stroke">%s</text>`,
			tx, padT+14+16*float64(i), anchor, template.HTMLEscapeString(m.Label))
	}
	for _, r := range c.Refs {
		y := a.sy(r.At)
		fmt.Fprintf(b, `<line class="ref" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#555" stroke-width="1.5" stroke-dasharray="8 4"/>`,
			padL, chartW-padR, y, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555">%s</text>`, chartW-padR-4, y-5, template.HTMLEscapeString(r.Label))
	}
}

// drawLegend lays the series' names out in a row under the title.
func (c Chart) drawLegend(b *strings.Builder) {
	x := padL
	for i, l := range c.Lines {
		if l.Dashed {
			// A dashed line is told from a solid one of its color by its
			// sample, not by a swatch.
			fmt.Fprintf(b, `<line x1="%.1f" x2="%.1f" y1="37" y2="37" stroke="%s" stroke-width="2.5" stroke-dasharray="4 3"/>`,
				x, x+16, c.color(i))
		} else {
			fmt.Fprintf(b, `<rect x="%.1f" y="32" width="14" height="10" fill="%s"/>`, x, c.color(i))
		}
		fmt.Fprintf(b, `<text x="%.1f" y="42">%s</text>`, x+20, template.HTMLEscapeString(l.Name))
		x += 36 + 7.5*float64(len(l.Name))
	}
}

// niceTicks returns round tick values (steps of 1, 2 or 5 times a power of
// ten) covering lo..hi with about n intervals; the last tick is >= hi.
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	step := niceNum((hi-lo)/float64(n), true)
	start := math.Floor(lo/step) * step
	var out []float64
	for v := start; ; v += step {
		v = math.Round(v/step) * step
		out = append(out, v)
		if v >= hi-step*1e-9 {
			return out
		}
	}
}

// niceNum rounds x to 1, 2, 5 or 10 times a power of ten (up, or to the
// nearest with round).
func niceNum(x float64, round bool) float64 {
	exp := math.Floor(math.Log10(x))
	f := x / math.Pow(10, exp)
	var nf float64
	switch {
	case round && f < 1.5, !round && f <= 1:
		nf = 1
	case round && f < 3, !round && f <= 2:
		nf = 2
	case round && f < 7, !round && f <= 5:
		nf = 5
	default:
		nf = 10
	}
	return nf * math.Pow(10, exp)
}

// logTicks returns the decades from lo to hi, with 2 and 5 between them when
// there are few decades.
func logTicks(lo, hi float64) []float64 {
	var out []float64
	few := hi/lo <= 1000
	for v := lo; v <= hi*1.0001; v *= 10 {
		out = append(out, v)
		if few && v*10 <= hi*1.0001 {
			out = append(out, 2*v, 5*v)
		}
	}
	return out
}

// num renders an axis value: thousands separated, no needless decimals.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1000 || a == math.Trunc(a):
		return thousands(int64(math.Round(v)))
	case a >= 1:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// yLabels renders the y axis' ticks short enough for the left margin (at
// most 7 characters): millions and billions as 1.5M and 3B, all of a linear
// axis on the scale of its largest tick so that they read alike.
func yLabels(ticks []float64, logY bool) []string {
	out := make([]string, len(ticks))
	top := 0.0
	for _, v := range ticks {
		top = math.Max(top, math.Abs(v))
	}
	for i, v := range ticks {
		if logY {
			top = math.Abs(v)
		}
		switch {
		case top >= 1e9:
			out[i] = short(v/1e9) + "B"
		case top >= 1e6:
			out[i] = short(v/1e6) + "M"
		default:
			out[i] = num(v)
		}
		if v == 0 {
			out[i] = "0"
		}
	}
	return out
}

// short renders v with at most three decimals and none needless: 1.5, 250.
func short(v float64) string {
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}

// thousands renders n with comma separators: 12,345.
func thousands(n int64) string { return humanize.Comma(n) }

// BarChart renders one bar per label, with optional horizontal reference
// lines (such as the no-op ceiling) that are not bars.
func BarChart(title, yLabel string, labels []string, values []float64, refs ...Marker) template.HTML {
	maxV := 0.0
	for _, v := range values {
		maxV = math.Max(maxV, v)
	}
	for _, r := range refs {
		maxV = math.Max(maxV, r.At)
	}
	yt := niceTicks(0, math.Max(maxV, 1), 5)
	a := axes{minX: 0, maxX: 1, minY: 0, maxY: yt[len(yt)-1]}
	c := Chart{Title: title, YLabel: yLabel, XTicks: map[float64]string{}, Refs: refs}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="100%%" font-family="sans-serif" font-size="13">`, chartW, chartH)
	fmt.Fprintf(&b, `<title>%s</title>`, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="16" font-weight="bold">%s</text>`, padL, template.HTMLEscapeString(title))
	c.drawAxes(&b, a, yt)
	pw, n := chartW-padL-padR, float64(len(labels))
	for i, l := range labels {
		bw := pw / n * 0.6
		x := padL + pw/n*float64(i) + pw/n*0.2
		y := a.sy(values[i])
		fmt.Fprintf(&b, `<rect class="series" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, x, y, bw, a.sy(0)-y, barPalette[i%len(barPalette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x+bw/2, y-5, num(math.Round(values[i])))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x+bw/2, chartH-padB+18, template.HTMLEscapeString(l))
	}
	c.drawMarkers(&b, a)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
