// Package report tells a loadtest.Result: the headline and the summary
// printed after a run, the audit, the self-contained HTML report with its
// SVG charts (a drop's with its own figures and timeline), the CSV time
// series, the .hgrm latency histogram and the JSON results.
package report

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/flashorder/flashorder/loadtest"
)

// WriteSummary prints the human summary of res: rates, answers, latency and
// the audit.
func WriteSummary(w io.Writer, res *loadtest.Result) {
	cfg := res.Config
	title := "orderbench"
	if res.Label != "" {
		title += " " + res.Label
	}
	load := fmt.Sprintf("%s loop, %d clients", res.Mode, cfg.Concurrency)
	if res.Drop != nil {
		load = fmt.Sprintf("a drop of %s users, at most %d requests in flight", thousands(int64(res.Drop.Users)), cfg.Concurrency)
	}
	fmt.Fprintf(w, "\n== %s: run %s, %s, %s measured against %s\n", title, res.RunID, load,
		fmtSecs(res.Seconds), strings.Join(cfg.URLs, ", "))
	fmt.Fprintf(w, "%s\n", Headline(res))
	if res.Drop != nil {
		writeDrop(w, res)
	}
	if res.Queue != nil {
		writeQueue(w, res)
	}
	fmt.Fprintf(w, "scenario   %s\n", cfg.Scenario)
	fmt.Fprintf(w, "offered    %10.1f req/s\n", res.OfferedRate)
	fmt.Fprintf(w, "achieved   %10.1f req/s  (%d answers)\n", res.AchievedRate, res.Requests)
	fmt.Fprintf(w, "orders     %10.1f orders/s  (%d new orders over the measured time)\n", res.OrdersPerSec, res.Orders)
	fmt.Fprintf(w, "refused    %10d  (business refusals: sold_out, limit_exceeded, not_started, sale_ended; not errors)\n", res.Refused)
	fmt.Fprintf(w, "errors     %10d  (5xx and transport failures)\n", res.Errors)
	if res.Mode != "closed" {
		fmt.Fprintf(w, "late       %10d requests sent more than %s after their intended time (max lag %.1fms); %d never sent\n",
			res.Late, cfg.LateThreshold, res.MaxLagMs, res.NotSent)
	}
	fmt.Fprintln(w, "answers:")
	for _, a := range res.Answers {
		share := 0.0
		if res.Requests > 0 {
			share = 100 * float64(a.Count) / float64(res.Requests)
		}
		fmt.Fprintf(w, "  %-32s %10d  %5.1f%%  %s\n", a.Answer.String(), a.Count, share, answerKind(a.Answer))
	}
	l := res.Latency
	from := "send"
	if res.Mode != "closed" {
		from = "intended send time"
	}
	fmt.Fprintf(w, "latency (ms, from %s): p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f\n",
		from, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	if s := res.ServiceLatency; s != nil {
		fmt.Fprintf(w, "service time (ms, from the actual send): p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
			s.P50, s.P90, s.P99, s.P999, s.Max)
	}
	for _, t := range res.Thresholds {
		verdict := "ok"
		if !t.OK {
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "threshold  %-20s %-8s actual %s\n", t.Expr, verdict, t.Actual)
	}
	WriteAudit(w, res.Audit)
}

// maxSKULines is how many SKUs a passing audit lists in the summary.
const maxSKULines = 10

// WriteAudit prints the audit verdict; a failed audit is loud.
func WriteAudit(w io.Writer, a *loadtest.AuditReport) {
	if a == nil {
		fmt.Fprintln(w, "audit: not run (no orderd behind the target)")
		return
	}
	if a.OK {
		fmt.Fprintf(w, "audit: OK: %d orders answered 201, %d read back and matching; stock taken equals the 201s", a.Orders, a.Checked)
		if a.Uncertain > 0 {
			fmt.Fprintf(w, " (%d requests with unknown outcome allowed for)", a.Uncertain)
		}
		fmt.Fprintln(w, "; server audit ok; per-user limits and idempotency hold")
		if wc := a.Window; wc != nil {
			writeWindow(w, wc)
		}
		if qa := a.Queue; qa != nil {
			writeQueueAudit(w, qa)
		}
		if ea := a.Events; ea != nil {
			writeEventsAudit(w, ea)
		}
		skus := a.SKUs
		if len(skus) > maxSKULines {
			var taken int64
			for _, s := range skus {
				taken += s.Taken
			}
			fmt.Fprintf(w, "  %d SKUs, %d units taken in all; the %d that sold most (--json has every SKU):\n",
				len(skus), taken, maxSKULines)
			skus = slices.Clone(skus)
			slices.SortStableFunc(skus, func(x, y loadtest.SKUAudit) int { return cmp.Compare(y.Taken, x.Taken) })
			skus = skus[:maxSKULines]
		}
		for _, s := range skus {
			fmt.Fprintf(w, "  %s: taken %d, client 201 units %d, available %d, sold %d, restocked %d\n",
				s.SKU, s.Taken, s.ClientUnits, s.After.Available, s.After.Sold, s.After.Restocked)
		}
		return
	}
	bar := strings.Repeat("!", 72)
	fmt.Fprintln(w, bar)
	fmt.Fprintf(w, "AUDIT FAILED: %d violation(s) (%d orders answered 201, %d read back)\n", len(a.Violations), a.Orders, a.Checked)
	for _, v := range a.Violations {
		fmt.Fprintln(w, "  - "+v)
	}
	if qa := a.Queue; qa != nil {
		writeQueueAudit(w, qa)
	}
	if ea := a.Events; ea != nil {
		writeEventsAudit(w, ea)
	}
	fmt.Fprintln(w, bar)
}

// writeWindow prints a passing drop audit's sale window line.
func writeWindow(w io.Writer, wc *loadtest.WindowCheck) {
	fmt.Fprintf(w, "  sale window: %d orders created from starts_at", wc.Orders)
	if wc.Orders > 0 {
		fmt.Fprintf(w, " +%s to +%s", fmtSince(wc.First.Sub(wc.StartsAt)), fmtSince(wc.Last.Sub(wc.StartsAt)))
	}
	fmt.Fprintf(w, "; %d before starts_at, %d at or after ends_at", wc.BeforeStart, wc.AfterEnd)
	switch {
	case wc.SoldOutChecked:
		fmt.Fprintf(w, "; sold out to the last unit (the users wanted %d)\n", wc.Demand)
	case wc.Demand > 0:
		fmt.Fprintf(w, "; sold out not checked (the users wanted %d units, or some were still trying at the end)\n", wc.Demand)
	default:
		fmt.Fprintln(w)
	}
}

// WriteJSON writes res as indented JSON to path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("report: encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: write results: %w", err)
	}
	return nil
}

func fmtSecs(s float64) string { return fmt.Sprintf("%.1fs", s) }
