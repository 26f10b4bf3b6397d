package loadtest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flashorder/flashorder/loadtest"
)

// TestParseThreshold accepts the documented forms and refuses the rest.
func TestParseThreshold(t *testing.T) {
	for _, ok := range []string{"p99<50ms", "p99.9<200ms", "p50 <= 1.5s", "errors<1%", "errors<5", "rate>5000",
		"orders>=100", "max<1s", "mean<10", "p100<1s"} {
		if _, err := loadtest.ParseThreshold(ok); err != nil {
			t.Errorf("ParseThreshold(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "p99", "p99<", "p101<1s", "latency<5ms", "p99<fast", "rate>5k", "errors<x%", "p99=5ms"} {
		if _, err := loadtest.ParseThreshold(bad); err == nil {
			t.Errorf("ParseThreshold(%q) accepted", bad)
		}
	}
}

// TestCheck evaluates thresholds against a result: errors are 5xx and
// transport failures only, and a failed threshold wraps ErrThresholdFailed.
func TestCheck(t *testing.T) {
	res := &loadtest.Result{Requests: 1000, Errors: 20, Refused: 900, AchievedRate: 4000, OrdersPerSec: 100,
		Latency: loadtest.Percentiles{P50: 2, P90: 5, P99: 40, P999: 150, Max: 300, Mean: 3}}
	cases := []struct {
		expr string
		ok   bool
	}{
		{"p99<50ms", true}, {"p99<40ms", false}, {"p99<=40", true}, {"p99.9<200ms", true}, {"max<0.2s", false},
		{"errors<1%", false}, {"errors<3%", true}, {"errors<21", true}, {"errors<20", false},
		{"rate>5000", false}, {"rate>3000", true}, {"orders>=100", true}, {"mean<3ms", false},
	}
	for _, tc := range cases {
		th, err := loadtest.ParseThreshold(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		err = loadtest.Check(res, []loadtest.Threshold{th})
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, loadtest.ErrThresholdFailed)) {
			t.Errorf("%s: Check = %v, want ok %v", tc.expr, err, tc.ok)
		}
		if len(res.Thresholds) != 1 || res.Thresholds[0].OK != tc.ok || res.Thresholds[0].Expr != tc.expr {
			t.Errorf("%s: recorded %+v", tc.expr, res.Thresholds)
		}
	}
	err := loadtest.Check(res, nil)
	if err != nil || res.Thresholds != nil {
		t.Errorf("no thresholds: %v, %+v", err, res.Thresholds)
	}
	th1, _ := loadtest.ParseThreshold("p99<10ms")
	th2, _ := loadtest.ParseThreshold("errors<1%")
	if err := loadtest.Check(res, []loadtest.Threshold{th1, th2}); err == nil ||
		!strings.Contains(err.Error(), "p99<10ms (was 40.00ms)") || !strings.Contains(err.Error(), "errors<1% (was 2%") {
		t.Errorf("two failures: %v", err)
	}
}

// TestAnswerKinds: business refusals are not errors; 5xx and transport
// failures are; an interrupted request is neither.
func TestAnswerKinds(t *testing.T) {
	for _, tc := range []struct {
		a            loadtest.Answer
		err, refusal bool
	}{
		{loadtest.Answer{Status: 201}, false, false},
		{loadtest.Answer{Status: 409, Code: "sold_out"}, false, true},
		{loadtest.Answer{Status: 409, Code: "limit_exceeded"}, false, true},
		{loadtest.Answer{Status: 409, Code: "not_started"}, false, true},
		{loadtest.Answer{Status: 409, Code: "sale_ended"}, false, true},
		{loadtest.Answer{Status: 409, Code: "request_in_progress"}, false, false},
		{loadtest.Answer{Status: 429, Code: "rate_limited"}, false, false},
		{loadtest.Answer{Status: 503, Code: "overloaded"}, true, false},
		{loadtest.Answer{Code: loadtest.CodeTimeout}, true, false},
		{loadtest.Answer{Code: loadtest.CodeRefused}, true, false},
		{loadtest.Answer{Code: loadtest.CodeCancelled}, false, false},
	} {
		if tc.a.IsError() != tc.err || tc.a.IsRefusal() != tc.refusal {
			t.Errorf("%v: IsError %v IsRefusal %v, want %v %v", tc.a, tc.a.IsError(), tc.a.IsRefusal(), tc.err, tc.refusal)
		}
	}
}
