package orderd

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOGC" {
				return v
			}
			return ""
		}
	}
	debug.SetGCPercent(100)
	if !TuneGC(env("")) {
		t.Fatal("TuneGC without GOGC did not set the target")
	}
	if now := debug.SetGCPercent(100); now != DefaultGCPercent {
		t.Fatalf("GC percent in force %d, want %d", now, DefaultGCPercent)
	}
	// GOGC set: the runtime applied it at start (here: 150); TuneGC keeps it.
	debug.SetGCPercent(150)
	if TuneGC(env("150")) {
		t.Fatal("TuneGC with GOGC=150 set the target")
	}
	if now := debug.SetGCPercent(100); now != 150 {
		t.Fatalf("GC percent in force %d, want the operator's 150", now)
	}
}
