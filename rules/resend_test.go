package rules

import "testing"

// TestResendAfterNewer: a device's QoS 1 resends of messages already
// evaluated (its broker node stored them and died before their PUBACKs
// left) arrive after newer messages. A resend whose digest is still held
// is a duplicate; one whose digest slot a later seq has taken (four or
// more newer) cannot be compared and is an older message (Late), not a
// restarted counter: before, three such resends in a row were read as a
// clock that went back, raised 时钟异常, and the next message cleared it
// (make cluster, a NATS node killed: both pushed to the station). A seq
// seen with other content whose digest is held is still a restarted
// counter.
func TestResendAfterNewer(t *testing.T) {
	const t0 = int64(1_795_420_800_000)
	for newer := 1; newer <= 6; newer++ {
		c := newClockDev(t, "sm-1")
		recv := t0
		ts := map[uint32]int64{}
		last := uint32(11 + newer)
		for s := uint32(1); s <= last; s++ {
			recv += 3_000
			ts[s] = recv
			c.send(recv, recv, "battery_pct", 90, false, s, false)
		}
		for _, s := range []uint32{9, 10, 11} {
			v, evs := c.send(ts[s], recv+500, "battery_pct", 90, false, s, false)
			want := Duplicate
			if last-s >= 4 {
				want = Late
			}
			if v.Admission != want || v.Behind || len(evs) != 0 {
				t.Errorf("newest %d: resend of %d: %+v%s, want admission %d, no event", last, s, v, transitionsOf(evs), want)
			}
		}
		if c.open("smoke.clock") {
			t.Errorf("newest %d: clock fault raised by resends", last)
		}
		// The newest's copy is still known as one (its digest kept).
		if v, _ := c.send(ts[last], recv+600, "battery_pct", 90, false, last, false); v.Admission != Duplicate {
			t.Errorf("newest %d: its copy after the resends: %+v, want a duplicate", last, v)
		}
	}

	// A restarted counter: seq 11 again (its digest still held) with other
	// content and a ts 30 s behind the newest, then 12 and 13 anew: a clock
	// that went back (the later two read on its skew), as before.
	c := newClockDev(t, "sm-1")
	recv := t0
	for s := uint32(1); s <= 12; s++ {
		recv += 3_000
		c.send(recv, recv, "battery_pct", 90, false, s, false)
	}
	for i, s := range []uint32{11, 12, 13} {
		v, _ := c.send(recv-30_000+int64(i)*1_000, recv+int64(i+1)*1_000, "battery_pct", 80, false, s, false)
		if v.Admission != Fresh || i == 0 && !v.Behind {
			t.Errorf("restarted counter, seq %d: %+v, want fresh (the first at the receive time: behind)", s, v)
		}
	}
	if !c.open("smoke.clock") {
		t.Errorf("restarted counter with a clock behind: no clock fault:%s", transitionsOf(c.evs))
	}
}
