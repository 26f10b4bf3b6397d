package loadtest

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrThresholdFailed is returned (wrapped) by Check when a threshold did not
// hold; orderbench exits with status 2 for it (1 stays the audit's).
var ErrThresholdFailed = errors.New("loadtest: threshold failed")

// Threshold is one pass condition on a run's result, parsed from an
// expression such as "p99<50ms", "p99.9<200ms", "errors<1%" or "rate>5000".
//
// Metrics: pN (a latency percentile, N from 0 to 100, decimals allowed),
// mean and max (latency; the value is a duration, or milliseconds when it
// has no unit); errors (5xx answers and transport failures, as a share of the
// requests with %, else a count; business refusals are not errors; a drop's
// product page GETs count with the orders); rate
// (answers per second) and orders (new orders per second). Operators: <, <=,
// >, >=.
type Threshold struct {
	Expr   string
	metric string
	q      float64 // the percentile, for pN
	op     string
	value  float64 // ms for latency, a share (0..1) or count for errors, per second for rates
	share  bool    // errors given in %
}

// ThresholdResult is a threshold checked against a result.
type ThresholdResult struct {
	Expr string `json:"expr"`
	// Actual is the run's value, in the threshold's unit.
	Actual string `json:"actual"`
	OK     bool   `json:"ok"`
}

var thresholdRE = regexp.MustCompile(`^\s*(p\d+(?:\.\d+)?|mean|max|errors|rate|orders)\s*(<=|>=|<|>)\s*(\S+?)\s*$`)

// ParseThreshold parses one threshold expression.
func ParseThreshold(expr string) (Threshold, error) {
	m := thresholdRE.FindStringSubmatch(expr)
	if m == nil {
		return Threshold{}, fmt.Errorf("loadtest: threshold %q: want METRIC OP VALUE, like p99<50ms, errors<1%% or rate>5000 "+
			"(metrics pN, mean, max, errors, rate, orders)", expr)
	}
	t := Threshold{Expr: strings.TrimSpace(expr), metric: m[1], op: m[2]}
	v := m[3]
	var err error
	switch {
	case strings.HasPrefix(t.metric, "p"):
		if t.q, err = strconv.ParseFloat(t.metric[1:], 64); err != nil || t.q > 100 {
			return Threshold{}, fmt.Errorf("loadtest: threshold %q: percentile %s is not in 0..100", expr, t.metric[1:])
		}
		t.metric = "p"
		t.value, err = parseMillis(v)
	case t.metric == "mean" || t.metric == "max":
		t.value, err = parseMillis(v)
	case t.metric == "errors" && strings.HasSuffix(v, "%"):
		t.share = true
		t.value, err = strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		t.value /= 100
	default:
		t.value, err = strconv.ParseFloat(v, 64)
	}
	if err != nil {
		return Threshold{}, fmt.Errorf("loadtest: threshold %q: bad value %q", expr, v)
	}
	return t, nil
}

// parseMillis reads a duration ("50ms", "1.5s") or a plain number of
// milliseconds.
func parseMillis(v string) (float64, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	return float64(d) / float64(time.Millisecond), nil
}

// actual returns res's value for t and its rendering.
func (t Threshold) actual(res *Result) (float64, string) {
	switch t.metric {
	case "p":
		ms := res.percentileMs(t.q)
		return ms, fmt.Sprintf("%.2fms", ms)
	case "mean":
		return res.Latency.Mean, fmt.Sprintf("%.2fms", res.Latency.Mean)
	case "max":
		return res.Latency.Max, fmt.Sprintf("%.2fms", res.Latency.Max)
	case "errors":
		errs, requests := res.Errors, res.Requests
		if pg := res.Page; pg != nil {
			errs, requests = errs+pg.Errors, requests+pg.Requests
		}
		if !t.share {
			return float64(errs), fmt.Sprint(errs)
		}
		share := 0.0
		if requests > 0 {
			share = float64(errs) / float64(requests)
		}
		return share, fmt.Sprintf("%.3g%% (%d of %d)", 100*share, errs, requests)
	case "rate":
		return res.AchievedRate, fmt.Sprintf("%.1f/s", res.AchievedRate)
	default: // orders
		return res.OrdersPerSec, fmt.Sprintf("%.1f/s", res.OrdersPerSec)
	}
}

// percentileMs returns the latency at percentile q, from the histogram when
// the result has it, else from the summary's fixed percentiles.
func (res *Result) percentileMs(q float64) float64 {
	if res.hist != nil && res.hist.TotalCount() > 0 {
		return float64(res.hist.ValueAtQuantile(q)) / 1000
	}
	l := res.Latency
	switch {
	case q <= 50:
		return l.P50
	case q <= 90:
		return l.P90
	case q <= 99:
		return l.P99
	case q <= 99.9:
		return l.P999
	default:
		return l.Max
	}
}

// holds reports whether actual satisfies the threshold.
func (t Threshold) holds(actual float64) bool {
	switch t.op {
	case "<":
		return actual < t.value
	case "<=":
		return actual <= t.value
	case ">":
		return actual > t.value
	default:
		return actual >= t.value
	}
}

// Check evaluates thresholds against res, records them in res.Thresholds and
// returns an error wrapping ErrThresholdFailed naming those that failed.
func Check(res *Result, thresholds []Threshold) error {
	var failed []string
	res.Thresholds = nil
	for _, t := range thresholds {
		v, shown := t.actual(res)
		ok := t.holds(v)
		res.Thresholds = append(res.Thresholds, ThresholdResult{Expr: t.Expr, Actual: shown, OK: ok})
		if !ok {
			failed = append(failed, fmt.Sprintf("%s (was %s)", t.Expr, shown))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrThresholdFailed, strings.Join(failed, ", "))
	}
	return nil
}
