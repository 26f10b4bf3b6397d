package loadtest

import (
	"math"
	"time"
)

// Schedule is the open-loop timetable: request i is meant to leave at
// Start + i/Rate, whatever happened to the requests before it. Latency is
// measured from that intended time, so a server that stalls is charged for
// every request it kept waiting (no coordinated omission). With Stages the
// rate ramps instead (see Stage) and Rate is not used.
type Schedule struct {
	// Start is the intended send time of request 0.
	Start time.Time
	// Rate is the number of requests per second; it must be > 0 unless
	// Stages are set.
	Rate float64
	// Stages, when set, ramp the rate.
	Stages []Stage
}

// Intended returns the intended send time of request i.
func (s Schedule) Intended(i int64) time.Time {
	if len(s.Stages) > 0 {
		t := rampTime(s.Stages, float64(i))
		if math.IsInf(t, 1) || t > float64(math.MaxInt64/int64(time.Second)) {
			return s.Start.Add(time.Duration(math.MaxInt64))
		}
		return s.Start.Add(time.Duration(t * float64(time.Second)))
	}
	return s.Start.Add(time.Duration(float64(i) * float64(time.Second) / s.Rate))
}

// Due returns how many requests are due at now: the requests 0..Due(now)-1
// have an intended time at or before now.
func (s Schedule) Due(now time.Time) int64 {
	d := now.Sub(s.Start)
	if d < 0 {
		return 0
	}
	if len(s.Stages) > 0 {
		return int64(math.Floor(rampCount(s.Stages, d.Seconds()))) + 1
	}
	return int64(math.Floor(d.Seconds()*s.Rate)) + 1
}

// Lateness is the lateness accounting of an open-loop run: how late requests
// left against their intended time, and how many left later than Threshold.
// The zero value with a Threshold is ready to use; it is not safe for
// concurrent use (each recorder shard keeps its own and they are merged).
type Lateness struct {
	// Threshold is how late a request may leave and still count as on time.
	Threshold time.Duration
	// Sent is the number of requests sent.
	Sent int64
	// Late is the number of requests sent more than Threshold after their
	// intended time.
	Late int64
	// MaxLag is the largest lateness seen.
	MaxLag time.Duration
}

// Record accounts one request that was meant to leave at intended and left at
// sent.
func (l *Lateness) Record(intended, sent time.Time) {
	l.Sent++
	lag := sent.Sub(intended)
	if lag > l.Threshold {
		l.Late++
	}
	if lag > l.MaxLag {
		l.MaxLag = lag
	}
}

// Merge adds o's counts to l.
func (l *Lateness) Merge(o Lateness) {
	l.Sent += o.Sent
	l.Late += o.Late
	if o.MaxLag > l.MaxLag {
		l.MaxLag = o.MaxLag
	}
}
