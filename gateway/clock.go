package gateway

import "time"

// clockFloor is a time every working clock is past: the release of this
// firegate. A box without a real-time clock boots in 1970 (or at the last
// time fake-hwclock saved) until NTP sets its clock; readings stamped then
// would be rejected or filed in the past by firewatch, and an expiry check
// of a linkage command would be meaningless.
var clockFloor = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// clockSynced reports whether now is a plausible wall-clock time.
func clockSynced(now time.Time) bool { return !now.Before(clockFloor) }
