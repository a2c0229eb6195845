package rules

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"unsafe"

	"github.com/firewatch-iot/firewatch/devices"
)

// TestAdmitFastPath drives two engines with the same random stamps, one
// through AdmitStamp (which takes its fast path when it can) and one through
// admitSlow only, and requires the same verdicts, clock events and device
// state after every message. The stamps are mostly the common case (trusted,
// in order, the next seq) with clock steps, resets, repeats, replays,
// missing seq or ts, counter restarts and duplicates mixed in, so that both
// paths and the moves between them are taken. RULES_FASTPATH_SEED
// reproduces a run.
func TestAdmitFastPath(t *testing.T) {
	seed := uint64(rand.Int64())
	if v, err := strconv.ParseUint(os.Getenv("RULES_FASTPATH_SEED"), 10, 64); err == nil {
		seed = v
	}
	set, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	l := fleet(8)
	fast, err := NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	// Each device's clock reads its receive time plus an offset, which
	// steps now and then and is set right again.
	type clock struct {
		off, recv int64
		seq       uint32
	}
	clocks := make([]clock, len(l.Devices))
	for i := range clocks {
		clocks[i] = clock{off: rng.Int64N(2_000), recv: 1_780_000_000_000}
	}
	var outF, outS []Event
	fastTaken := 0
	for step := range 50_000 {
		dev := rng.IntN(len(l.Devices))
		c := &clocks[dev]
		c.recv += 1 + rng.Int64N(5_000)
		c.seq++
		// Odd devices have clocks that step back and messages late beyond
		// the reorder tolerance; even ones do not, and stay mostly on the
		// fast path.
		odd := dev%2 == 1
		switch rng.IntN(100) {
		case 0: // a clock step back
			if !odd {
				break
			}
			c.off -= rng.Int64N(3_600_000)
		case 2, 3, 4, 5, 6: // set right
			c.off = rng.Int64N(2_000)
		}
		ts := c.recv + c.off
		s := Stamp{Time: ts, Recv: c.recv, Seq: c.seq, HasSeq: true, HasTS: true, Trusted: true,
			Replay: rng.IntN(4) == 0, Digest: uint32(ts) ^ c.seq}
		switch rng.IntN(40) {
		case 0: // an implausible clock: receive time
			s.Time, s.Trusted, s.Suspect = c.recv, false, true
		case 1: // no ts
			s.Time, s.HasTS, s.Trusted = c.recv, false, false
		case 2: // no seq
			s.HasSeq, s.Seq = false, 0
		case 3: // the counter restarts
			c.seq = uint32(rng.IntN(3))
			s.Seq = c.seq
		case 4: // a repeat of a recent message, exact or not
			back := uint32(rng.IntN(6))
			s.Seq = c.seq - back
			s.Time = ts - int64(back)*2_000
			s.Digest = uint32(s.Time) ^ s.Seq
			if rng.IntN(2) == 0 {
				s.Digest++
			}
		case 5: // a seq jump
			c.seq += uint32(rng.IntN(200))
			s.Seq = c.seq
		case 6: // late
			if odd {
				s.Time -= rng.Int64N(90_000)
			} else {
				s.Time -= rng.Int64N(10_000)
			}
		}
		ds := &fast.dev[dev]
		if s.Trusted && !s.Suspect && ds.last != 0 && ds.flags&(flagBehind|clockMask|flagClockFault) == 0 {
			fastTaken++
		}
		sf, ss := s, s
		vf, evF := fast.AdmitStamp(devices.Index(dev), &sf, outF[:0])
		vs, evS := slow.admitSlow(devices.Index(dev), &slow.dev[dev], &ss, outS[:0])
		if vf != vs || len(evF) != len(evS) || fast.dev[dev] != slow.dev[dev] || fast.skews[devices.Index(dev)] != slow.skews[devices.Index(dev)] || fast.eras[devices.Index(dev)] != slow.eras[devices.Index(dev)] {
			t.Fatalf("seed %d (RULES_FASTPATH_SEED), step %d, device %d, stamp %+v:\nAdmitStamp %+v %d events %+v\nadmitSlow  %+v %d events %+v",
				seed, step, dev, s, vf, len(evF), fast.dev[dev], vs, len(evS), slow.dev[dev])
		}
		for i := range evF {
			f, w := evF[i], evS[i]
			if f.Rule.ID != w.Rule.ID {
				t.Fatalf("seed %d (RULES_FASTPATH_SEED), step %d: event of %s, want %s", seed, step, f.Rule.ID, w.Rule.ID)
			}
			f.Rule, w.Rule = nil, nil // each engine has its own clock rules
			if f != w {
				t.Fatalf("seed %d (RULES_FASTPATH_SEED), step %d: event %+v, want %+v", seed, step, f, w)
			}
		}
		outF, outS = evF, evS
	}
	t.Logf("seed %d: fast path conditions held for %d of 50000 messages", seed, fastTaken)
	if fastTaken < 10_000 {
		t.Fatalf("seed %d: the fast path's conditions held only %d times", seed, fastTaken)
	}
}

// The fixed per-device state stays at 48 bytes and 4-byte aligned: the
// charger's whole state (default rules) is then under the 256-byte budget.
func TestDevStateSize(t *testing.T) {
	if n, a := unsafe.Sizeof(devState{}), unsafe.Alignof(devState{}); n != 48 || a != 4 {
		t.Fatalf("devState is %d bytes, aligned to %d: want 48, 4", n, a)
	}
}
