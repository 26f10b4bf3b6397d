package orderd

import (
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in     string
		n      int
		period time.Duration
		ok     bool
	}{
		{"5/s", 5, time.Second, true},
		{"120/m", 120, time.Minute, true},
		{"1/h", 1, time.Hour, true},
		{"0/s", 0, 0, false},
		{"-1/s", 0, 0, false},
		{"5", 0, 0, false},
		{"5/d", 0, 0, false},
		{"x/s", 0, 0, false},
	} {
		n, period, err := parseRate(tc.in)
		if (err == nil) != tc.ok || n != tc.n || period != tc.period {
			t.Errorf("parseRate(%q) = %d, %v, %v", tc.in, n, period, err)
		}
	}
}

func TestRunRefusesBadOverloadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--idempotency", "redis://%zz"},
		{"--rate-limit-user", "fast"},
		{"--rate-limit-user", "5/s", "--rate-limit-store", "memcached://x"},
	} {
		refusesToStart(t, args...)
	}
}
