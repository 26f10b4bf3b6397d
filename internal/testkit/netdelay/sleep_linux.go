package netdelay

import (
	"syscall"
	"time"
)

// sleepPrecisely sleeps d in the kernel (nanosleep), within the kernel's
// timer slack (50 µs by default) of d.
func sleepPrecisely(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	_ = syscall.Nanosleep(&ts, nil) // an early wake-up (EINTR) is waited out by the caller's loop
}
