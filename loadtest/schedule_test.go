package loadtest_test

import (
	"testing"
	"time"

	"github.com/flashorder/flashorder/loadtest"
)

func TestScheduleIntendedAndDue(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := loadtest.Schedule{Start: start, Rate: 1000}
	for i, want := range map[int64]time.Duration{0: 0, 1: time.Millisecond, 1500: 1500 * time.Millisecond} {
		if got := s.Intended(i); !got.Equal(start.Add(want)) {
			t.Errorf("Intended(%d) = %v, want start+%v", i, got.Sub(start), want)
		}
	}
	for _, tc := range []struct {
		at   time.Duration
		want int64
	}{
		{-time.Nanosecond, 0},
		{0, 1},
		{999 * time.Microsecond, 1},
		{time.Millisecond, 2},
		{time.Second, 1001},
	} {
		if got := s.Due(start.Add(tc.at)); got != tc.want {
			t.Errorf("Due(start+%v) = %d, want %d", tc.at, got, tc.want)
		}
	}
	// A rate that does not divide a second: no drift over many requests.
	s = loadtest.Schedule{Start: start, Rate: 3}
	if got := s.Intended(3000); !got.Equal(start.Add(1000 * time.Second)) {
		t.Errorf("Intended(3000) at 3/s = start+%v, want start+1000s", got.Sub(start))
	}
	if got := s.Due(start.Add(1000 * time.Second)); got != 3001 {
		t.Errorf("Due(start+1000s) at 3/s = %d, want 3001", got)
	}
}

func TestLateness(t *testing.T) {
	start := time.Now()
	l := loadtest.Lateness{Threshold: time.Millisecond}
	l.Record(start, start)                             // on time
	l.Record(start, start.Add(time.Millisecond))       // exactly at the threshold: on time
	l.Record(start, start.Add(2*time.Millisecond))     // late
	l.Record(start, start.Add(-time.Millisecond))      // early (never happens, but not late)
	l.Record(start, start.Add(500*time.Millisecond+1)) // late
	if l.Sent != 5 || l.Late != 2 || l.MaxLag != 500*time.Millisecond+1 {
		t.Fatalf("got sent %d late %d max lag %v, want 5, 2, 500ms+1ns", l.Sent, l.Late, l.MaxLag)
	}
	o := loadtest.Lateness{Threshold: time.Millisecond}
	o.Record(start, start.Add(time.Second))
	l.Merge(o)
	if l.Sent != 6 || l.Late != 3 || l.MaxLag != time.Second {
		t.Fatalf("after merge: sent %d late %d max lag %v, want 6, 3, 1s", l.Sent, l.Late, l.MaxLag)
	}
}

func TestPercentiles(t *testing.T) {
	h := loadtest.NewHistogram()
	if p := loadtest.PercentilesOf(h); p.Count != 0 || p.P99 != 0 {
		t.Fatalf("empty histogram: %+v", p)
	}
	// 1..1000 ms, one each: p50 = 500ms, p90 = 900ms, p99 = 990ms, max = 1000ms.
	for i := 1; i <= 1000; i++ {
		loadtest.RecordLatency(h, time.Duration(i)*time.Millisecond)
	}
	p := loadtest.PercentilesOf(h)
	near := func(name string, got, want float64) {
		t.Helper()
		if got < want*0.999 || got > want*1.001 {
			t.Errorf("%s = %.3fms, want %.3fms within 0.1%%", name, got, want)
		}
	}
	if p.Count != 1000 {
		t.Errorf("count %d, want 1000", p.Count)
	}
	near("p50", p.P50, 500)
	near("p90", p.P90, 900)
	near("p99", p.P99, 990)
	near("p99.9", p.P999, 999)
	near("max", p.Max, 1000)
	near("mean", p.Mean, 500.5)

	d := loadtest.Distribution(h)
	for i := 1; i < len(d); i++ {
		if d[i].Percentile <= d[i-1].Percentile || d[i].LatencyMs < d[i-1].LatencyMs {
			t.Fatalf("distribution not monotonic at %d: %+v", i, d)
		}
	}
	if last := d[len(d)-1]; last.Percentile != 100 || last.LatencyMs != p.Max {
		t.Errorf("distribution ends at %+v, want 100%% = max %.3f", last, p.Max)
	}

	// Out-of-range values are clamped, not dropped.
	h.Reset()
	loadtest.RecordLatency(h, 0)
	loadtest.RecordLatency(h, time.Hour)
	if h.TotalCount() != 2 {
		t.Errorf("clamped values: count %d, want 2", h.TotalCount())
	}
}
