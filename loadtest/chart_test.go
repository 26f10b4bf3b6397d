package loadtest_test

import (
	"context"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/testkit/fakeorderd"
	"github.com/flashorder/flashorder/loadtest"
	"github.com/flashorder/flashorder/loadtest/report"
)

// TestShortRunsChartSeveralPoints runs for 0.6 s, by time and by a request
// count (whose length is not known in advance): the buckets are 10 ms, and
// every time chart draws many points, not one. A run by request count past
// a second moves on to 100 ms buckets, and the titles say so.
func TestShortRunsChartSeveralPoints(t *testing.T) {
	for _, tc := range []struct {
		name          string
		duration      time.Duration
		requests      int64
		bucket, first float64
	}{
		{"duration", 600 * time.Millisecond, 0, 0.01, 0},
		{"requests", 0, 200, 0.01, 0},
		{"requests past a second", 0, 800, 0.1, 0.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := fakeorderd.New(fakeorderd.None)
			fake.Delay = 8 * time.Millisecond
			srv := httptest.NewServer(fake)
			defer srv.Close()
			cfg := fakeConfig(srv.URL)
			cfg.Duration, cfg.Requests = tc.duration, tc.requests
			res, err := loadtest.Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if res.BucketSeconds != tc.bucket || res.FirstBucketSeconds != tc.first || len(res.Series) < 5 {
				t.Fatalf("a %.2f s run: %v s buckets (first %v s), %d intervals; want %v s (first %v s)",
					res.Seconds, res.BucketSeconds, res.FirstBucketSeconds, len(res.Series), tc.bucket, tc.first)
			}
			t.Logf("%.2f s: %d intervals", res.Seconds, len(res.Series))
			points := regexp.MustCompile(`<polyline class="series"[^>]* points="([^"]*)"`)
			charts := report.Charts(res)
			if tc.first > 0 && !strings.Contains(string(charts[2]), "per 10 ms to 100 ms bucket") {
				t.Errorf("the throughput chart does not name the buckets: %.120s", charts[2])
			}
			for _, c := range charts[:len(charts)-1] { // the last is the distribution, not over time
				for _, m := range points.FindAllStringSubmatch(string(c), -1) {
					if n := len(strings.Fields(m[1])); n < 5 {
						t.Errorf("a line of %d points in %.80s", n, c)
					}
				}
			}
		})
	}
}
