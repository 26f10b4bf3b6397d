//go:build !linux

package netdelay

import "time"

// sleepPrecisely sleeps d; off Linux it is time.Sleep, as precise as the
// runtime's timers.
func sleepPrecisely(d time.Duration) { time.Sleep(d) }
