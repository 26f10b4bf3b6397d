package loadtest_test

import (
	"context"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flashorder/flashorder/internal/testkit/fakeorderd"
	"github.com/flashorder/flashorder/loadtest"
	"github.com/flashorder/flashorder/loadtest/report"
)

func TestParseStages(t *testing.T) {
	st, err := loadtest.ParseStages("10s:500, 30s:2000")
	if err != nil || len(st) != 2 || st[0] != (loadtest.Stage{Duration: 10 * time.Second, Target: 500}) ||
		st[1] != (loadtest.Stage{Duration: 30 * time.Second, Target: 2000}) {
		t.Fatalf("ParseStages = %+v, %v", st, err)
	}
	for _, bad := range []string{"", "10s", "10:500", "0s:5", "10s:-1", "10s:x", ","} {
		if _, err := loadtest.ParseStages(bad); err == nil {
			t.Errorf("ParseStages(%q) accepted", bad)
		}
	}
}

// TestStageTarget ramps linearly from 0, then from each target to the next,
// and holds the last one.
func TestStageTarget(t *testing.T) {
	st := []loadtest.Stage{{Duration: 10 * time.Second, Target: 500}, {Duration: 30 * time.Second, Target: 2000}}
	for at, want := range map[time.Duration]float64{0: 0, 5 * time.Second: 250, 10 * time.Second: 500,
		25 * time.Second: 1250, 40 * time.Second: 2000, time.Minute: 2000} {
		if got := loadtest.StageTarget(st, at); math.Abs(got-want) > 1e-9 {
			t.Errorf("StageTarget(%v) = %v, want %v", at, got, want)
		}
	}
	if d := loadtest.StagesDuration(st); d != 40*time.Second {
		t.Errorf("StagesDuration = %v", d)
	}
}

// TestRampSchedule: with stages the open loop's timetable follows the ramp:
// the number of requests due is the area under the rate, and each request's
// intended time is when it becomes due.
func TestRampSchedule(t *testing.T) {
	start := time.Unix(1000, 0)
	st := []loadtest.Stage{{Duration: 10 * time.Second, Target: 500}, {Duration: 10 * time.Second, Target: 500},
		{Duration: 5 * time.Second, Target: 0}}
	s := loadtest.Schedule{Start: start, Stages: st}
	// Areas: 2500 in the ramp up, 5000 held, 1250 ramping down.
	for at, want := range map[time.Duration]int64{0: 1, 10 * time.Second: 2501, 20 * time.Second: 7501, 25 * time.Second: 8751} {
		if got := s.Due(start.Add(at)); got != want {
			t.Errorf("Due(+%v) = %d, want %d", at, got, want)
		}
	}
	prev := start.Add(-time.Nanosecond)
	for i := int64(0); i < 8750; i += 7 {
		at := s.Intended(i)
		if at.Before(prev) {
			t.Fatalf("Intended(%d) = %v goes back in time", i, at.Sub(start))
		}
		prev = at
		if due := s.Due(at.Add(time.Microsecond)); due != i+1 {
			t.Fatalf("request %d intended at +%v, but Due there is %d", i, at.Sub(start), due)
		}
	}
	// Without stages the schedule is the constant rate's.
	c := loadtest.Schedule{Start: start, Rate: 100}
	if got := c.Intended(250); got != start.Add(2500*time.Millisecond) {
		t.Errorf("constant rate: Intended(250) = %v", got.Sub(start))
	}
}

// TestStagesRun ramps a closed loop up and down, and an open loop's rate:
// the run lasts as long as its stages, the series records the target, and
// the open loop sends the ramp's area.
func TestStagesRun(t *testing.T) {
	srv := httptest.NewServer(fakeorderd.New(fakeorderd.None))
	defer srv.Close()
	cfg := fakeConfig(srv.URL)
	cfg.Requests = 0
	cfg.Stages = []loadtest.Stage{{Duration: 400 * time.Millisecond, Target: 4}, {Duration: 400 * time.Millisecond, Target: 0}}
	res, err := loadtest.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("closed loop: %v", err)
	}
	if res.Config.Concurrency != 4 || res.Config.Duration != 800*time.Millisecond || res.Mode != "closed" {
		t.Errorf("closed loop: %d clients for %v, mode %s", res.Config.Concurrency, res.Config.Duration, res.Mode)
	}
	peak := 0.0
	for _, iv := range res.Series {
		peak = math.Max(peak, iv.Target)
		// The interval's end is read after its timer; allow for the gap.
		if want := loadtest.StageTarget(cfg.Stages, time.Duration(iv.T*float64(time.Second))); math.Abs(iv.Target-want) > 0.5 {
			t.Errorf("closed loop: the interval ending at %.3fs records target %v, the ramp says %v", iv.T, iv.Target, want)
		}
	}
	if last := res.Series[len(res.Series)-1]; peak < 1 || last.Target > 0.5 {
		t.Errorf("closed loop: target peaked at %v and ended at %v, want a rise and 0", peak, last.Target)
	}
	var page strings.Builder
	if err := report.WriteHTML(&page, report.Page{Title: "t", Runs: []*loadtest.Result{res}}); err != nil ||
		!strings.Contains(page.String(), "Clients (stages 400ms:4,400ms:0)") {
		t.Errorf("the report has no chart of the ramp's clients (%v)", err)
	}

	cfg = fakeConfig(srv.URL)
	cfg.Requests = 0
	cfg.Rate = 1 // selects the open loop; the stages set the rate
	cfg.Concurrency = 20
	cfg.Stages = []loadtest.Stage{{Duration: 500 * time.Millisecond, Target: 200}}
	res, err = loadtest.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open loop: %v", err)
	}
	// The area under the ramp: 200/s * 0.5 s / 2 = 50 requests, and request
	// 0 at the start.
	if got := res.Requests + res.NotSent; got < 49 || got > 51 || res.Mode != "open" {
		t.Errorf("open loop: %d requests and %d not sent, want 50 in all (mode %s)", res.Requests, res.NotSent, res.Mode)
	}
}
