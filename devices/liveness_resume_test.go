package devices

import (
	"testing"
	"time"
)

// Resume gives a device another instance's last sighting: it goes offline
// at that sighting plus its grace (not a grace after the resume, where this
// instance's own wheel entry waits), once; a device that speaks after the
// resume is not raised.
func TestLivenessResume(t *testing.T) {
	l := fleet(3, KindElectrical)
	sink := &liveSink{}
	const t0 = int64(1_800_000_000_000)
	lv, err := NewLiveness(l, LivenessConfig{Tick: time.Second, Missed: 2}, sink, t0)
	if err != nil {
		t.Fatal(err)
	}
	g := int64(2 * DefaultHeartbeat[KindElectrical] / time.Millisecond) // 10 min
	now := t0 + 5*60_000
	for d := range Index(3) {
		lv.Seen(d, now) // this instance's own view: a fresh grace from now
	}
	lv.Tick(now)
	last := t0 - 60_000
	for d := range Index(3) {
		lv.Resume(d, last, true, false, now)
	}
	lv.Seen(2, now+1000) // device 2 speaks after the takeover
	for tick := now + 1000; tick < now+g; tick += 1000 {
		lv.Tick(tick)
		if tick == last+g-1000 && len(sink.evs) != 0 {
			t.Fatalf("raised before the grace from the last sighting: %+v", sink.evs)
		}
	}
	var off []Index
	for _, e := range sink.evs {
		if e.online {
			t.Errorf("online event %+v", e)
			continue
		}
		if e.lastSeen != last || e.now != last+g {
			t.Errorf("device %d raised with last seen %+d, at %+d; want at its grace from the last sighting", e.d, e.lastSeen-t0, e.now-t0)
		}
		off = append(off, e.d)
	}
	if len(off) != 2 || off[0] == 2 || off[1] == 2 {
		t.Errorf("raised %v, want devices 0 and 1 once each", off)
	}
	if st := lv.Status(0); st.Online || st.LastSeen != last {
		t.Errorf("device 0: %+v", st)
	}
}
