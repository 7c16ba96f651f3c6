package main

import (
	"runtime"
	"syscall"
	"time"
)

// Go's timers wake a sleeper on Linux up to a millisecond late (the runtime waits in
// epoll with millisecond timeouts). Measured on the 2-core machine: a dispatcher sleeping
// with time.Sleep to send times 200 µs apart came back a median 0.59 ms late, 1.24 ms at
// p99; in nanosleep(2) on its own thread with a 1 ns timer slack, 0.05 ms and 0.33 ms.
// An open-loop client charges that lateness to the server: latency counts from the due
// time. So the dispatcher sleeps here.

// preciseSleeper pins the calling goroutine to its thread and lowers the thread's timer
// slack; the returned function undoes the pinning.
func preciseSleeper() func() {
	runtime.LockOSThread()
	const prSetTimerslack = 29
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, 1, 0)
	return runtime.UnlockOSThread
}

// sleepUntil blocks the calling thread until at (at once if at has passed).
func sleepUntil(at time.Time) {
	for {
		wait := time.Until(at)
		if wait <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(wait))
		if syscall.Nanosleep(&ts, nil) == nil {
			return
		}
		// EINTR (the runtime signals its threads): sleep what is left
	}
}
