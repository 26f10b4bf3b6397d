package loadtest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Stage is one step of a ramp: over Duration the load moves in a straight
// line from the previous stage's Target (0 before the first) to Target. The
// target is a number of clients in the closed loop and a request rate in the
// open loop. Two stages with the same target hold it.
type Stage struct {
	Duration time.Duration `json:"duration"`
	Target   float64       `json:"target"`
}

// ParseStages parses "10s:500,30s:2000" (duration:target, comma-separated).
func ParseStages(s string) ([]Stage, error) {
	var out []Stage
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, t, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("loadtest: stage %q is not duration:target", part)
		}
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			return nil, fmt.Errorf("loadtest: stage %q: the duration must be positive, like 10s", part)
		}
		target, err := strconv.ParseFloat(t, 64)
		if err != nil || target < 0 || math.IsInf(target, 0) || math.IsNaN(target) {
			return nil, fmt.Errorf("loadtest: stage %q: the target must be a number >= 0", part)
		}
		out = append(out, Stage{Duration: dur, Target: target})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("loadtest: no stages in %q", s)
	}
	return out, nil
}

// StagesDuration returns the length of all stages together.
func StagesDuration(stages []Stage) time.Duration {
	var d time.Duration
	for _, s := range stages {
		d += s.Duration
	}
	return d
}

// StagesMax returns the highest target of stages.
func StagesMax(stages []Stage) float64 {
	m := 0.0
	for _, s := range stages {
		m = math.Max(m, s.Target)
	}
	return m
}

// StageTarget returns the target the ramp has reached elapsed after its
// start; after the last stage, the last target.
func StageTarget(stages []Stage, elapsed time.Duration) float64 {
	from := 0.0
	for _, s := range stages {
		if elapsed < s.Duration {
			return from + (s.Target-from)*float64(elapsed)/float64(s.Duration)
		}
		elapsed -= s.Duration
		from = s.Target
	}
	return from
}

// rampCount returns how many requests a ramp of rates has scheduled in its
// first t seconds: the integral of the rate.
func rampCount(stages []Stage, t float64) float64 {
	from, n := 0.0, 0.0
	for _, s := range stages {
		d := s.Duration.Seconds()
		if t < d {
			return n + from*t + (s.Target-from)*t*t/(2*d)
		}
		n += (from + s.Target) * d / 2
		t -= d
		from = s.Target
	}
	return n + from*t
}

// rampTime returns the time, in seconds from the start, at which a ramp of
// rates has scheduled c requests: the inverse of rampCount. It is +Inf when
// the ramp never gets there (it ends at rate 0).
func rampTime(stages []Stage, c float64) float64 {
	from, start := 0.0, 0.0
	for _, s := range stages {
		d := s.Duration.Seconds()
		in := (from + s.Target) * d / 2
		if c <= in && in > 0 {
			a, b := (s.Target-from)/(2*d), from
			if math.Abs(a) < 1e-12 {
				return start + c/b
			}
			// a x² + b x = c; the root in [0, d].
			return start + (-b+math.Sqrt(b*b+4*a*c))/(2*a)
		}
		c -= in
		start += d
		from = s.Target
	}
	if from <= 0 {
		return math.Inf(1)
	}
	return start + c/from
}
