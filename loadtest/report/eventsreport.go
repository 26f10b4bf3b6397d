package report

import (
	"fmt"
	"io"

	"github.com/flashorder/flashorder/loadtest"
)

// writeEventsAudit prints the audit of the run's order events: what was
// consumed, what the checks found (the pays and cancels after the load
// among them), how long the relay took to drain and
// the publish lag.
func writeEventsAudit(w io.Writer, ea *loadtest.EventsAudit) {
	drained := fmt.Sprintf("drained %.1fs after the load", ea.WaitSeconds)
	if !ea.Drained {
		drained = fmt.Sprintf("NOT drained within %.1fs after the load", ea.WaitSeconds)
	}
	fmt.Fprintf(w, "  events: %s consumed from %s (%s deliveries, %s duplicates dropped; %s of other orders left out); %s\n",
		thousands(int64(ea.Consumed)), ea.URL, thousands(ea.Deliveries), thousands(ea.Duplicates), thousands(ea.Foreign), drained)
	fmt.Fprintf(w, "  events: %s order.created; %d missing, %d repeated, %d gaps, %d orphans, %d mismatched, %d undecodable; %d orders without a 201 (outcome unknown) have events\n",
		thousands(int64(ea.Created)), ea.Missing, ea.Repeated, ea.Gaps, ea.Orphans, ea.Mismatched, ea.Undecodable, ea.Unanswered)
	fmt.Fprintf(w, "  events: transitions after the load: %s paid, %s cancelled (200s), %d refused as moved already, %d without an answer; "+
		"%d missing their event, %d wrong, %d repeated; %s order.expired\n",
		thousands(int64(ea.Paid)), thousands(int64(ea.Cancelled)), ea.Refused, ea.TransitionErrors,
		ea.TransitionsMissing, ea.TransitionsWrong, ea.TransitionsRepeated, thousands(int64(ea.Expired)))
	l := ea.Lag
	fmt.Fprintf(w, "  events: publish lag (ms, the event's time to its arrival at orderbench): p50 %.2f  p99 %.2f  max %.2f  (%s events)\n",
		l.P50, l.P99, l.Max, thousands(l.Count))
}
