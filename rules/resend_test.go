package rules

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

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

// TestRestartWithinWindow: a smoke detector reboots 27 messages after its
// counter started (so within the seq window, every digest of the old
// counter's first seqs overwritten) and its clock is 20 s behind the newest
// it sent before (FuzzFieldModel, seed 454). Its new counter's first
// messages, from 1, 2 or 3, are new: evaluated, the low battery raised.
// Taken for resends after newer messages (late), their alarm was hidden: a
// smoke alarm in the model. From 4 on they are taken as resends: the limit
// of four digests, documented (docs/rules.md).
//
// The same when firewatch first heard the device at seq 10 (the window
// holds no seq below it): a seq below 4 is a restart, not a message
// reordered into the window's gap.
func TestRestartWithinWindow(t *testing.T) {
	const t0 = int64(1_795_420_800_000)
	for _, first := range []uint32{1, 10} {
		for start := uint32(1); start <= 4; start++ {
			c := newClockDev(t, "sm-1")
			recv := t0
			for s := first; s <= 27; s++ {
				recv += 20_000
				c.send(recv, recv, "battery_pct", 90, false, s, false)
			}
			newest := recv
			for i := range uint32(3) {
				recv += 2_000
				ts := newest - 20_000 + int64(i)*2_000
				v, _ := c.send(ts, recv, "battery_pct", 10, false, start+i, false)
				if start < counterStart && v.Admission != Fresh {
					t.Errorf("first heard at %d, counter restarted at %d: seq %d: %+v, want fresh", first, start, start+i, v)
				}
				if start >= counterStart && v.Admission != Late {
					t.Errorf("first heard at %d, counter restarted at %d: seq %d: %+v, want late (the documented limit)", first, start, start+i, v)
				}
			}
			if got := c.open("smoke.battery"); got != (start < counterStart) {
				t.Errorf("first heard at %d, counter restarted at %d: low battery open %v%s", first, start, got, transitionsOf(c.evs))
			}
			if start < counterStart {
				// The new counter's copies are duplicates again.
				if v, _ := c.send(newest-20_000+2_000, recv+500, "battery_pct", 10, false, start+1, false); v.Admission != Duplicate {
					t.Errorf("first heard at %d, counter restarted at %d: copy of seq %d: %+v, want a duplicate", first, start, start+1, v)
				}
			}
		}
	}
}

// TestResendRandomized: a device with a right clock sends a stream whose
// battery level jumps across its low-battery thresholds; a random third
// of its messages is sent again (an exact copy, as a QoS 1 resend) 1 to 40
// messages later, at most 60 s behind the newest. No copy may be evaluated
// as new, no clock fault may be raised, and the events must be those of the
// stream without the copies. FW_SEED repeats a run.
func TestResendRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("FW_SEED"), 10, 64); err == nil {
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	const t0 = int64(1_795_420_800_000)
	for round := range 50 {
		type msg struct {
			seq   uint32
			ts    int64
			value float64
		}
		var stream []msg
		// Seqs past the counter's start: a resend of one of its first
		// three messages is taken for a restarted counter (counterStart).
		for s := uint32(1001); s <= 1200; s++ {
			// 10–30 %: across the low-battery threshold (below 20, clear at 25).
			level := float64(10 + rng.IntN(21))
			stream = append(stream, msg{s, t0 + int64(s)*1_000, level})
		}
		// copies[i]: the messages sent again right after stream[i].
		copies := make([][]msg, len(stream))
		for i, m := range stream {
			if rng.IntN(3) == 0 {
				at := min(len(stream)-1, i+1+rng.IntN(40))
				copies[at] = append(copies[at], m)
			}
		}
		plain, noisy := newClockDev(t, "sm-1"), newClockDev(t, "sm-1")
		for i, m := range stream {
			plain.send(m.ts, m.ts, "battery_pct", m.value, false, m.seq, false)
			noisy.send(m.ts, m.ts, "battery_pct", m.value, false, m.seq, false)
			for _, c := range copies[i] {
				recv := stream[i].ts + 200
				v, evs := noisy.send(c.ts, recv, "battery_pct", c.value, false, c.seq, false)
				if v.Admission == Fresh || len(evs) != 0 {
					t.Fatalf("seed %d round %d: copy of seq %d after seq %d: %+v%s, want it not evaluated as new",
						seed, round, c.seq, stream[i].seq, v, transitionsOf(evs))
				}
			}
		}
		if got, want := transitionsOf(noisy.evs), transitionsOf(plain.evs); got != want {
			t.Fatalf("seed %d round %d: events with copies%s, without%s", seed, round, got, want)
		}
		if len(plain.evs) == 0 {
			t.Fatalf("seed %d round %d: the stream raised no event; the comparison would be empty", seed, round)
		}
		if noisy.open("smoke.clock") {
			t.Fatalf("seed %d round %d: clock fault raised by copies", seed, round)
		}
	}
}
