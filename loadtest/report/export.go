package report

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"github.com/flashorder/flashorder/loadtest"
)

// WriteHgrm writes the measured latency histogram in HdrHistogram's
// percentile format (.hgrm, milliseconds), which HdrHistogram's plotter and
// other tools read. Results read back from JSON have no histogram.
func WriteHgrm(w io.Writer, res *loadtest.Result) error {
	h := res.Histogram()
	if h == nil {
		return errors.New("report: this result has no latency histogram")
	}
	if _, err := h.PercentilesPrint(w, 5, 1000); err != nil {
		return fmt.Errorf("report: write .hgrm: %w", err)
	}
	return nil
}

// WriteCSV writes the time series, one row per bucket: its end, length,
// counts, rates, latency percentiles, stock, the ramp's target, a drop's
// product page (GETs, rate, p50, p99, errors), then one column per kind of
// answer ("409 sold_out") and one per SKU's stock left.
func WriteCSV(w io.Writer, res *loadtest.Result) error {
	codeSet := map[string]bool{}
	for _, iv := range res.Series {
		for k := range iv.Codes {
			codeSet[k] = true
		}
	}
	codes := make([]string, 0, len(codeSet))
	for k := range codeSet {
		codes = append(codes, k)
	}
	slices.Sort(codes)
	head := []string{"t_s", "seconds", "warmup", "answers", "orders", "errors", "refused", "answers_per_s",
		"orders_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "late", "stock_left", "target"}
	pages := res.Page != nil
	if pages {
		head = append(head, "pages", "pages_per_s", "page_p50_ms", "page_p99_ms", "page_errors")
	}
	for _, c := range codes {
		head = append(head, "answers "+c)
	}
	nSKU := 0
	if len(res.Series) > 0 {
		nSKU = len(res.Series[0].SKUStock)
	}
	for i := range nSKU {
		name := strconv.Itoa(i)
		if i < len(res.SKUs) {
			name = res.SKUs[i]
		}
		head = append(head, "stock "+name)
	}
	cw := csv.NewWriter(w)
	_ = cw.Write(head)
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, iv := range res.Series {
		row := []string{f(iv.T), f(iv.Seconds), strconv.FormatBool(iv.Warmup), i64(iv.Answers), i64(iv.Orders),
			i64(iv.Errors), i64(iv.Refused), f(iv.AnswersPerS), f(iv.OrdersPerS), f(iv.P50), f(iv.P90), f(iv.P99),
			f(iv.Max), i64(iv.Late), i64(iv.StockLeft), f(iv.Target)}
		if pages {
			row = append(row, i64(iv.Pages), f(iv.PagesPerS), f(iv.PageP50), f(iv.PageP99), i64(iv.PageErrors))
		}
		for _, c := range codes {
			row = append(row, i64(iv.Codes[c]))
		}
		for i := range nSKU {
			v := ""
			if i < len(iv.SKUStock) {
				v = i64(iv.SKUStock[i])
			}
			row = append(row, v)
		}
		_ = cw.Write(row)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("report: write CSV: %w", err)
	}
	return nil
}

// WriteFile creates path and writes it with write.
func WriteFile(path string, res *loadtest.Result, write func(io.Writer, *loadtest.Result) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: create %s: %w", path, err)
	}
	if err := write(f, res); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}
