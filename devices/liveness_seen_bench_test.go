package devices

import (
	"testing"
	"time"
)

// BenchmarkLivenessSeenAdvancing is BenchmarkLivenessSeen with a receive
// time that moves forward, as in service: every call writes the word.
func BenchmarkLivenessSeenAdvancing(b *testing.B) {
	lv, _ := NewLiveness(fleet(1_000_000, KindSmoke), LivenessConfig{Tick: time.Second}, &countSink{}, 0)
	b.ReportAllocs()
	i, now := 0, int64(1000)
	for b.Loop() {
		now++
		lv.Seen(Index(i), now)
		i = (i + 7919) % 1_000_000
	}
}
