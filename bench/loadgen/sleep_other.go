//go:build !linux

package main

import "time"

// Elsewhere the runtime's timers are what there is (see sleep_linux.go).
func preciseSleeper() func() { return func() {} }

func sleepUntil(at time.Time) {
	if wait := time.Until(at); wait > 0 {
		time.Sleep(wait)
	}
}
