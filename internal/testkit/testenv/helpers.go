package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Unique returns name with a random suffix: a key, user id or prefix that no
// other test or run uses, so that tests sharing a server never meet.
func Unique(name string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return name + "-" + hex.EncodeToString(b)
}

// WaitFor polls cond every 10 ms until it holds, and fails t when it does not
// within timeout; what names the condition in the failure.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Metrics scrapes baseURL's /metrics with Prometheus's own text parser.
func Metrics(baseURL string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s/metrics: %w", baseURL, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s/metrics: %w", baseURL, err)
	}
	return fams, nil
}

// MetricSum scrapes baseURL's /metrics and returns the sum of every series of
// the counter or gauge name (its value when it has no labels); ok is false
// when /metrics has no such metric.
func MetricSum(baseURL, name string) (sum float64, ok bool, err error) {
	fams, err := Metrics(baseURL)
	if err != nil {
		return 0, false, err
	}
	f := fams[name]
	if f == nil {
		return 0, false, nil
	}
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, true, nil
}
