package orderd

import "runtime/debug"

// DefaultGCPercent is the garbage collector's target (GOGC) that orderd
// runs with when the environment sets no GOGC. Go's default, 100, starts a
// collection each time the heap doubles over what is live; orderd's live
// heap is small (a few MB of caches and connection buffers) and its
// allocations are per request, so at tens of thousands of requests a second
// the default spends about 6% of orderd's CPU in the collector. 400 lets the
// heap grow to five times what is live between collections and cuts that
// share by about four, for a few tens of MB more memory.
const DefaultGCPercent = 400

// TuneGC sets the collector's target to DefaultGCPercent unless getenv
// returns a GOGC (the runtime already applied it: the operator's choice
// wins), and reports whether it set it.
func TuneGC(getenv func(string) string) (set bool) {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(DefaultGCPercent)
	return true
}
