package devices

import (
	"testing"
	"time"
)

// Issue 14: a late reading counts at its device time, with max semantics,
// and does not revive an offline device unless it is within its grace of
// now.
func TestSeenAtMaxSemantics(t *testing.T) {
	sink := &countSink{}
	// Smoke: 24 h × 2 = 48 h grace; a 1 h tick.
	lv, err := NewLiveness(fleet(1, KindSmoke), LivenessConfig{Tick: time.Hour}, sink, 0)
	if err != nil {
		t.Fatal(err)
	}
	const h = int64(3600_000)
	lv.Seen(0, 10*h)
	lv.SeenAt(0, 5*h, 11*h) // older: ignored
	if st := lv.Status(0); st.LastSeen != 10*h {
		t.Fatalf("last seen %d h, want 10", st.LastSeen/h)
	}
	lv.SeenAt(0, 13*h, 12*h) // ahead of now: capped at now
	if st := lv.Status(0); st.LastSeen != 12*h {
		t.Fatalf("last seen %d h, want 12 (capped at now)", st.LastSeen/h)
	}
	lv.Tick(61 * h)
	if sink.off != 1 || lv.Offline() != 1 {
		t.Fatalf("raised %d, offline %d", sink.off, lv.Offline())
	}
	lv.SeenAt(0, 13*h, 70*h) // a replay from before it went silent
	lv.Tick(71 * h)
	if st := lv.Status(0); st.Online || st.LastSeen != 13*h || sink.on != 0 {
		t.Fatalf("after a replay: online %v, last seen %d h, online calls %d", st.Online, st.LastSeen/h, sink.on)
	}
	lv.SeenAt(0, 30*h, 72*h) // within its grace of now: it was alive 42 h ago
	lv.Tick(73 * h)
	if st := lv.Status(0); !st.Online || st.LastSeen != 30*h || sink.on != 1 || lv.Offline() != 0 {
		t.Fatalf("after a reading within the grace: %+v, online calls %d", st, sink.on)
	}
	// And it goes offline again at 30 h + 48 h, not 48 h after 72 h.
	lv.Tick(79 * h)
	if sink.off != 2 {
		t.Fatalf("raised %d times, want again at 78 h", sink.off)
	}
}
