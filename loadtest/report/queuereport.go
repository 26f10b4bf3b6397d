package report

import (
	"fmt"
	"io"

	"github.com/flashorder/flashorder/loadtest"
)

// writeQueue prints a drop's waiting room and bots: the joins and polls,
// the queue over time, the fairness figures, the bots' share and the
// sold-out notifications.
func writeQueue(w io.Writer, res *loadtest.Result) {
	q := res.Queue
	if q.Admission == loadtest.AdmissionQueue {
		fmt.Fprintf(w, "queue      %s joins (p99 %.2f ms, %s errors, %s refused 429), %s polls (p99 %.2f ms, %s errors); %s tickets, %s in the pre-queue, %s admitted; %s refused admission_used (a bot's second use of a token), %s admission_required\n",
			thousands(q.Joins), q.JoinLatency.P99, thousands(q.JoinErrors), thousands(q.RateLimited), thousands(q.Polls), q.PollLatency.P99,
			thousands(q.PollErrors), thousands(int64(q.Tickets)), thousands(int64(q.PreQueue)), thousands(int64(q.Admitted)),
			thousands(q.AdmissionUsed), thousands(q.AdmissionRequired))
		tau := "n/a (fewer than 2 admitted, or all in one admission round)"
		if q.TauAfterT0 != nil {
			tau = fmt.Sprintf("%.4f", *q.TauAfterT0)
		}
		if q.GammaAfterT0 != nil {
			tau += fmt.Sprintf("; gamma %.4f (tied pairs left out)", *q.GammaAfterT0)
		}
		order := "the admission numbers"
		if q.AdmitOrder != "number" {
			order = "the admission rounds' moments"
		} else if q.TauByRoundAfterT0 != nil {
			tau += fmt.Sprintf("; by admission round only %.4f (one round's admissions tie)", *q.TauByRoundAfterT0)
		}
		fmt.Fprintf(w, "fairness   Kendall tau-b after T0 (join order vs admission order by %s, %s buyers who joined after T0 and were admitted): %s\n",
			order, thousands(int64(q.TauN)), tau)
		if pq := q.PreQueueTest; pq != nil && pq.DF == 0 {
			fmt.Fprintf(w, "           pre-queue against a uniform shuffle: n/a: its %s tickets were admitted (or not) all alike, no order to test\n", thousands(pq.N))
		} else if pq != nil {
			fmt.Fprintf(w, "           pre-queue against a uniform shuffle: chi-square %.2f, df %d, p = %.3f (%s tickets, join time in %d groups x admission order)\n",
				pq.Stat, pq.DF, pq.P, thousands(pq.N), pq.Rows)
		}
		if q.SellOut > 0 {
			fmt.Fprintf(w, "sold out   at %s: %s waiting buyers told sold_out by a poll, max %.0f ms, p99 %.0f ms after the last unit's 201 "+
				"(less orderbench's own lateness in sending those polls: max %.0f ms, p99 %.0f ms); %s more joined after it\n",
				fromT0(q.SellOut-res.Drop.Lead), thousands(int64(q.ToldSoldOut)), q.NotifyMaxMs, q.NotifyP99Ms, q.NetMaxMs, q.NetP99Ms,
				thousands(int64(q.SoldOutAtJoin)))
		}
		writeQueueSeries(w, res)
	}
	if q.Bots > 0 {
		fmt.Fprintf(w, "bots       %s of %s buyers (%.1f%%), %d user ids each: %s of %s units (%.1f%%), %.2f x their share of buyers",
			thousands(int64(q.Bots)), thousands(int64(q.Buyers)), 100*q.BotBuyerShare, q.BotIDs, thousands(q.BotUnits), thousands(q.Units),
			100*q.BotUnitShare, q.BotRatio)
		if q.BlockedBotIDs > 0 {
			fmt.Fprintf(w, "; %s bot ids refused a place (429)", thousands(int64(q.BlockedBotIDs)))
		}
		if q.Admission == loadtest.AdmissionQueue && q.EarlyUnits > 0 {
			fmt.Fprintf(w, "; against the %s buyers who joined before T0 as the bots did (%s units): %.2f x their share",
				thousands(int64(q.EarlyBuyers)), thousands(q.EarlyUnits), q.BotEarlyRatio)
		}
		if q.Admission != loadtest.AdmissionQueue {
			fmt.Fprint(w, " (without the queue)")
		}
		fmt.Fprintln(w)
	}
}

// writeQueueSeries prints the queue over time from orderd's metrics: about
// 20 rows.
func writeQueueSeries(w io.Writer, res *loadtest.Result) {
	q := res.Queue
	var found []loadtest.QueueSample
	for _, s := range q.Samples {
		if s.Found {
			found = append(found, s)
		}
	}
	if len(found) == 0 {
		fmt.Fprintf(w, "queue      orderd's /metrics did not show the queue (%v)\n", q.MetricsErrors)
		return
	}
	step := max(1, len(found)/20)
	fmt.Fprintln(w, "queue over time (orderd's metrics; orders and joins: the client's):")
	fmt.Fprintf(w, "  %-10s %8s %11s %8s %9s %7s %9s %8s %8s\n", "from T0", "waiting", "outstanding", "used", "committed", "bound", "admitted", "orders", "joins")
	for i := 0; i < len(found); i += step {
		s := found[i]
		if i+step >= len(found) {
			s = found[len(found)-1]
		}
		fmt.Fprintf(w, "  %-10s %8.0f %11.0f %8.0f %9.0f %7.0f %9.0f %8d %8d\n", fromT0(s.At-res.Drop.Lead), s.Waiting, s.Outstanding, s.Used,
			s.Committed, s.Bound, s.Admitted, s.Orders, s.Joins)
	}
}

// queueChart draws the waiting room over time: tickets waiting, admissions
// outstanding and made, the client's orders, and the bound.
func queueChart(res *loadtest.Result) Chart {
	c := timeChart(res, "Waiting room: tickets waiting, admissions and orders (orderd's metrics)", "tickets / admissions / orders")
	shift, _ := timeAxis(res)
	waiting := Line{Name: "waiting", Color: "#1f77b4"}
	outstanding := Line{Name: "admissions outstanding", Color: "#ff7f0e"}
	admitted := Line{Name: "admissions made", Color: "#9467bd"}
	orders := Line{Name: "orders (201)", Color: kindColor(loadtest.KindOrder)}
	bound := Line{Name: "bound (committed may not exceed)", Color: "#555", Dashed: true}
	committed := Line{Name: "committed (sold + outstanding)", Color: "#d62728"}
	for _, s := range res.Queue.Samples {
		if !s.Found {
			continue
		}
		x := s.At - shift
		waiting.Points = append(waiting.Points, [2]float64{x, s.Waiting})
		outstanding.Points = append(outstanding.Points, [2]float64{x, s.Outstanding})
		admitted.Points = append(admitted.Points, [2]float64{x, s.Admitted})
		orders.Points = append(orders.Points, [2]float64{x, float64(s.Orders)})
		bound.Points = append(bound.Points, [2]float64{x, s.Bound})
		committed.Points = append(committed.Points, [2]float64{x, s.Committed})
	}
	c.Lines = []Line{waiting, outstanding, admitted, orders, committed, bound}
	return c
}

// writeQueueAudit prints the waiting room's part of the audit.
func writeQueueAudit(w io.Writer, qa *loadtest.QueueAudit) {
	fmt.Fprintf(w, "  waiting room: %d orders with a token, %d tokens used twice, %d 201s without a token, %d expected 409 admission_used; "+
		"%d metrics readings, committed at most %g of bound %g (%d readings over it, %d confirmed), flashorder_queue_bound_exceeded_total %g\n",
		qa.TokenOrders, qa.TokensReused, qa.WithoutToken, qa.AdmissionUsed, qa.Samples, qa.MaxCommitted, qa.Bound, qa.OverBound,
		qa.OverBoundConfirmed, qa.BoundExceeded)
}
