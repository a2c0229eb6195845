package gateway

import "time"

// SetClockFloor moves the clock check's floor, so that a test can play a
// box whose clock has not been set yet; it returns the old floor.
func SetClockFloor(t time.Time) time.Time {
	old := clockFloor
	clockFloor = t
	return old
}
