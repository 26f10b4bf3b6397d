package cluster

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Report is the outcome of one fault scenario: the load, what the clients
// got, what the database holds, the audits' verdicts and how long the fault
// took to recover from.
type Report struct {
	// Name is the scenario, Fault what was done to the cluster.
	Name, Fault string
	// Instances is the number of orderd processes, Strategy their flag.
	Instances int
	Strategy  string
	// Clients is the number of concurrent clients, Load the measured time.
	Clients int
	Load    time.Duration
	// Requests is the number of answers (and transport errors); Created the
	// new orders (201s that were not replays).
	Requests, Created int64
	// Answers counts the answers by kind: "201", "503 unavailable",
	// "connection_refused", ...
	Answers map[string]int64
	// DBOrders is the number of orders in the database after the run.
	DBOrders int64
	// AuditOK is the verdict of the loadtest audit and of CheckDB together;
	// Violations lists what they found.
	AuditOK    bool
	Violations []string
	// Recovery is the time to recover, as RecoveryNote defines it (the
	// scenarios use the longest time without a 201 across the fault);
	// negative when not measured.
	Recovery     time.Duration
	RecoveryNote string
	// Notes are scenario-specific figures (memory, latency of refusals, ...).
	Notes []string
}

// TransportErrors is the number of requests that got no HTTP answer.
func (r *Report) TransportErrors() int64 {
	var n int64
	for k, v := range r.Answers {
		if !startsWithDigit(k) {
			n += v
		}
	}
	return n
}

func startsWithDigit(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

// answersString lists the answers, 201 first.
func (r *Report) answersString() string {
	keys := make([]string, 0, len(r.Answers))
	for k := range r.Answers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, r.Answers[k]))
	}
	return strings.Join(parts, ", ")
}

func (r *Report) auditString() string {
	if r.AuditOK {
		return "ok"
	}
	return fmt.Sprintf("FAILED (%d violations)", len(r.Violations))
}

func (r *Report) recoveryString() string {
	if r.Recovery < 0 {
		return "n/a"
	}
	return r.Recovery.Round(time.Millisecond).String()
}

// Markdown renders the report as a section of docs/RELIABILITY.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", r.Name)
	fmt.Fprintf(&b, "- Fault: %s\n", r.Fault)
	fmt.Fprintf(&b, "- Load: %d clients for %s over %d orderd instances (`--strategy %s`)\n",
		r.Clients, r.Load.Round(100*time.Millisecond), r.Instances, r.Strategy)
	fmt.Fprintf(&b, "- Requests: %d; new orders (201): %d; transport errors: %d\n", r.Requests, r.Created, r.TransportErrors())
	fmt.Fprintf(&b, "- Answers: %s\n", r.answersString())
	fmt.Fprintf(&b, "- Orders in the database: %d\n", r.DBOrders)
	fmt.Fprintf(&b, "- Audit (loadtest audit and database check): %s\n", r.auditString())
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	fmt.Fprintf(&b, "- Time to recover: %s", r.recoveryString())
	if r.RecoveryNote != "" {
		fmt.Fprintf(&b, " (%s)", r.RecoveryNote)
	}
	b.WriteString("\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

// Table renders reports as one Markdown table.
func Table(reports []*Report) string {
	var b strings.Builder
	b.WriteString("| scenario | clients | load | requests | new orders (201) | errors by kind | orders in db | audit | recovery |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range reports {
		errs := map[string]int64{}
		for k, v := range r.Answers {
			if k != "201" {
				errs[k] = v
			}
		}
		e := (&Report{Answers: errs}).answersString()
		if e == "" {
			e = "none"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %s | %d | %s | %s |\n", r.Name, r.Clients,
			r.Load.Round(100*time.Millisecond), r.Requests, r.Created, e, r.DBOrders, r.auditString(), r.recoveryString())
	}
	return b.String()
}
