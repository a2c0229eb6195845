// Package logbudget bounds the log lines that bad input can drive (rejected
// messages, refused connections, a broker's per-connection lines): at most
// a fixed number a second, and then one line saying how many were dropped.
package logbudget

import (
	"sync"
	"time"
)

// PerSecond is the budget firewatch gives each such log.
const PerSecond = 5

// Budget lets at most PerSecond lines a second through; the zero value is
// ready to use, and safe for concurrent use.
type Budget struct {
	mu         sync.Mutex
	windowEnd  time.Time
	logged     int
	suppressed int
}

// Take reports whether a line at now fits in the budget of its second.
// dropped is how many lines the previous window held back, given once, with
// the first line of the next window (whether or not that one fits), so
// that the caller can log the count.
func (b *Budget) Take(now time.Time) (ok bool, dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.After(b.windowEnd) {
		dropped = b.suppressed
		b.windowEnd, b.logged, b.suppressed = now.Add(time.Second), 0, 0
	}
	if b.logged < PerSecond {
		b.logged++
		return true, dropped
	}
	b.suppressed++
	return false, dropped
}
