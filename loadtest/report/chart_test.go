package report_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/loadtest/report"
)

// TestChartLabelsFitBigValues draws values in the billions: the y axis'
// labels are short and lie inside the SVG, clear of the axis title.
func TestChartLabelsFitBigValues(t *testing.T) {
	for _, logY := range []bool{false, true} {
		c := report.Chart{Title: "big", YLabel: "units", LogY: logY, Lines: []report.Line{
			{Name: "n", Points: [][2]float64{{0, 2.9e9}, {1, 3.1e9}, {2, 3.4e9}, {3, 1.2e6}}}}}
		svg := string(c.SVG())
		labels := regexp.MustCompile(`<text x="([0-9.]+)" y="[0-9.]+" text-anchor="end">([^<]*)</text>`).FindAllStringSubmatch(svg, -1)
		if len(labels) < 3 {
			t.Fatalf("log %v: %d y labels in %s", logY, len(labels), svg)
		}
		for _, m := range labels {
			x, _ := strconv.ParseFloat(m[1], 64)
			// 13 px sans-serif: no character is wider than 8 px; the
			// rotated axis title ends at about x = 22.
			if left := x - 8*float64(len(m[2])); left < 24 {
				t.Errorf("log %v: the label %q at x %.0f starts at about %.0f", logY, m[2], x, left)
			}
			if !strings.HasSuffix(m[2], "B") && !strings.HasSuffix(m[2], "M") && m[2] != "0" && !logY {
				t.Errorf("the label %q on a linear axis up to billions", m[2])
			}
		}
	}
}
