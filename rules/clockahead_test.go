package rules

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// A clock that ran ahead of the receive time (within ingest.max_future, so
// its ts was believed) and is then set right: its later readings stand at
// their own, right ts, the clock fault (时钟异常) does not stay raised, and
// what happened while it was ahead is still judged right when it is
// replayed. Before the fix the engine took the correction for a clock that
// went back by the lead: every later reading was read that far in the
// future and the clock fault was raised and never cleared.

// clockDev drives one device of an engine with hand-made stamps.
type clockDev struct {
	t   *testing.T
	e   *Engine
	d   *devices.Device
	seq uint32
	evs []Event // every event so far, clock faults included
}

func newClockDev(t *testing.T, id string) *clockDev {
	t.Helper()
	set, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	l := testLedger(t)
	e, err := NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := l.Lookup([]byte(id))
	if !ok {
		t.Fatalf("no device %s in the test ledger", id)
	}
	return &clockDev{t: t, e: e, d: d}
}

// send admits a message with ts (trusted) received at recv, with the next
// seq unless seq is given (> 0) or noSeq, and evaluates metric = value.
// It returns the verdict and the events it caused.
func (c *clockDev) send(ts, recv int64, metric string, value float64, replay bool, seq uint32, noSeq bool) (Verdict, []Event) {
	c.t.Helper()
	if seq == 0 && !noSeq {
		c.seq++
		seq = c.seq
	}
	s := Stamp{Time: ts, Recv: recv, Seq: seq, HasSeq: !noSeq, HasTS: true, Trusted: true, Replay: replay,
		Digest: uint32(ts/1000)*31 + uint32(value*7) + seq}
	v, evs := c.e.AdmitStamp(c.d.Index, &s, nil)
	m, ok := devices.MetricByName(c.d.Kind, metric)
	if !ok {
		c.t.Fatalf("no metric %s", metric)
	}
	evs = c.e.Eval(devices.Reading{Device: c.d.Index, Kind: c.d.Kind, Metric: m, Value: value, Time: v.Time, Seq: seq}, v.Admission, evs)
	c.evs = append(c.evs, evs...)
	return v, evs
}

func (c *clockDev) open(rule string) bool {
	open := false
	for _, ev := range c.evs {
		if ev.Rule.ID == rule {
			open = ev.Transition == Raise
		}
	}
	return open
}

func transitionsOf(evs []Event) string {
	s := ""
	for _, ev := range evs {
		s += fmt.Sprintf(" %s:%s", ev.Rule.ID, ev.Transition)
	}
	return s
}

func TestClockAheadSetRight(t *testing.T) {
	const t0 = int64(1_795_420_800_000)
	const lead = 5 * 60_000 // within ingest.max_future (10 min)
	for _, gateway := range []bool{false, true} {
		id := "sm-1"
		metric, event := "battery_pct", "smoke_alarm"
		if gateway {
			id, metric, event = "hy-1", "pressure_mpa", "tilt"
		}
		t.Run(id, func(t *testing.T) {
			c := newClockDev(t, id)
			clockRule := ClockRuleID(c.d.Kind)
			recv := t0
			// Five minutes ahead, a message every 10 s for 10 minutes.
			for range 60 {
				recv += 10_000
				if v, _ := c.send(recv+lead, recv, metric, 0.3, gateway, 0, false); v.Admission != Fresh || v.Time != recv+lead {
					t.Fatalf("ahead: %+v", v)
				}
			}
			// NTP sets it right: every later reading stands at its own ts.
			for i := range 30 {
				recv += 10_000
				v, evs := c.send(recv-200, recv, metric, 0.3, gateway, 0, false)
				if v.Admission != Fresh || v.Behind || v.Time != recv-200 {
					t.Fatalf("message %d after the clock was set right: %+v, want fresh at its ts %d (%+d ms)", i, v, recv-200, v.Time-(recv-200))
				}
				if len(evs) != 0 {
					t.Fatalf("message %d after the clock was set right:%s", i, transitionsOf(evs))
				}
			}
			if c.open(clockRule) {
				t.Fatalf("%s open for a clock that is right", clockRule)
			}
			// A danger reported now is raised at its time.
			recv += 10_000
			v, evs := c.send(recv-200, recv, event, 1, gateway, 0, false)
			if len(evs) != 1 || evs[0].Rule.Metric.String() != event || evs[0].Transition != Raise || evs[0].Time != recv-200 {
				t.Fatalf("%s after the correction: %+v%s", event, v, transitionsOf(evs))
			}
		})
	}
}

// A clock that was ahead, then went an hour behind the receive time (the
// clock fault is raised), then is set right: the fault clears and the
// readings stand at their ts again.
func TestClockAheadBehindRight(t *testing.T) {
	const t0 = int64(1_795_420_800_000)
	c := newClockDev(t, "sm-1")
	recv := t0
	for range 20 {
		recv += 10_000
		c.send(recv+4*60_000, recv, "battery_pct", 90, false, 0, false)
	}
	for i := range 5 {
		recv += 10_000
		v, _ := c.send(recv-3600_000, recv, "battery_pct", 90, false, 0, false)
		if v.Admission != Fresh || v.Time < recv || v.Time > recv+1000 {
			t.Fatalf("message %d an hour behind: %+v, want behind at the receive time %d (%+d ms)", i, v, recv, v.Time-recv)
		}
	}
	if !c.open("smoke.clock") {
		t.Fatalf("no clock fault for a clock an hour behind:%s", transitionsOf(c.evs))
	}
	recv += 10_000
	v, evs := c.send(recv-100, recv, "battery_pct", 90, false, 0, false)
	if v.Behind || v.Time != recv-100 || c.open("smoke.clock") {
		t.Fatalf("set right: %+v%s, want the fault cleared and the reading at its ts", v, transitionsOf(evs))
	}
}

// What the device sent while its clock was ahead, replayed after the
// correction (a gateway's spool, beyond the seq window or without seq),
// changes nothing: a late end does not clear an alarm raised since, and an
// old raise does not come back.
func TestClockAheadReplay(t *testing.T) {
	const t0 = int64(1_795_420_800_000)
	const lead = 5 * 60_000
	for _, c := range []struct {
		noSeq   bool
		between string // what happens to the engine before the replay
	}{{false, ""}, {true, ""}, {false, "reload"}, {false, "restart"}, {true, "restart"}} {
		noSeq := c.noSeq
		t.Run(fmt.Sprintf("noSeq=%v,%s", noSeq, c.between), func(t *testing.T) {
			c, between := newClockDev(t, "hy-1"), c.between
			recv := t0
			type sent struct {
				ts, recv int64
				seq      uint32
				v        float64
			}
			var ahead []sent
			send := func(ts int64, metric string, v float64) (Verdict, []Event) {
				vd, evs := c.send(ts, recv, metric, v, true, 0, noSeq)
				if metric == "tilt" {
					ahead = append(ahead, sent{ts, recv, c.seq, v})
				}
				return vd, evs
			}
			recv += 1000
			send(recv+lead, "tilt", 1) // raised
			recv += 1000
			send(recv+lead, "tilt", 0) // cleared
			recv += 1000
			send(recv+lead, "pressure_mpa", 0.3)
			oldEnd := ahead[1]
			// Set right; a minute later it tilts again.
			for range 6 {
				recv += 10_000
				send(recv, "pressure_mpa", 0.3)
			}
			if _, evs := send(recv+500, "tilt", 1); len(evs) != 1 || evs[0].Transition != Raise {
				t.Fatalf("tilt after the correction:%s", transitionsOf(evs))
			}
			// 70 more seqs: the ahead era is beyond the seq window.
			for range 70 {
				recv += 1000
				send(recv, "pressure_mpa", 0.3)
			}
			// The moved times survive a reload of the rules and a
			// restart (the checkpoint).
			switch between {
			case "reload":
				e, err := NewEngine(c.e.Set(), testLedger(t))
				if err != nil {
					t.Fatal(err)
				}
				e.Adopt(c.e)
				c.e = e
			case "restart":
				var buf bytes.Buffer
				l := testLedger(t)
				if _, err := c.e.Snapshot(nil, l).WriteTo(&buf); err != nil {
					t.Fatal(err)
				}
				e, err := NewEngine(c.e.Set(), l)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.Restore(&buf, l); err != nil {
					t.Fatal(err)
				}
				c.e = e
			}
			// The gateway replays its spool.
			for _, r := range ahead[:2] {
				recv += 1000
				v, evs := c.send(r.ts, recv, "tilt", r.v, true, r.seq, noSeq)
				if len(evs) != 0 {
					t.Fatalf("a replay of %+v (sent with the clock ahead) changed the tilt alarm: %+v%s", r, v, transitionsOf(evs))
				}
			}
			if !c.open("hydrant.tilt") {
				t.Fatalf("tilt closed: the late end (%+v) cleared it", oldEnd)
			}
		})
	}
}

// A checkpoint written before the moved clocks were saved (FWRULES2: no
// eras section) still restores.
func TestStateV2Checkpoint(t *testing.T) {
	c := newClockDev(t, "hy-1")
	const t0 = int64(1_795_420_800_000)
	c.send(t0, t0, "tilt", 1, true, 0, false)
	l := testLedger(t)
	var buf bytes.Buffer
	if _, err := c.e.Snapshot(nil, l).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// v2: the old magic, no eras count (4 zero bytes) before the CRC.
	v2 := append([]byte(stateMagicV2), b[len(stateMagic):len(b)-8]...)
	v2 = binary.LittleEndian.AppendUint32(v2, crc32.Checksum(v2, castagnoli))
	e, err := NewEngine(c.e.Set(), l)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.Restore(bytes.NewReader(v2), l); err != nil || n != len(l.Devices) {
		t.Fatalf("restored %d devices of a FWRULES2 checkpoint: %v", n, err)
	}
	c.e = e
	if _, evs := c.send(t0+1000, t0+1000, "tilt", 1, true, 0, false); len(evs) != 0 {
		t.Fatalf("the restored tilt raised again:%s", transitionsOf(evs))
	}
}

// After a clock that ran ahead was set right, the detector reboots: its
// counter restarts at a seq the engine saw while the clock was ahead. Its
// messages read as the clock does now, so they are new (not read back as
// replays of the time ahead): at their ts, no clock fault, a smoke alarm
// raised. (Found by the field model: the restarted seqs were taken for
// replays and the clock fault was raised.)
func TestClockAheadThenReboot(t *testing.T) {
	const t0 = int64(1_795_420_800_000)
	c := newClockDev(t, "sm-1")
	recv := t0
	for range 40 {
		recv += 20_000
		c.send(recv+5*60_000, recv, "battery_pct", 90, false, 0, false)
	}
	for range 5 { // set right
		recv += 20_000
		c.send(recv-100, recv, "battery_pct", 90, false, 0, false)
	}
	for i := uint32(1); i <= 5; i++ { // rebooted: seq 1, 2, …
		recv += 20_000
		v, evs := c.send(recv-100, recv, "battery_pct", 80, false, i, false)
		if v.Admission != Fresh || v.Behind || v.Time != recv-100 || len(evs) != 0 {
			t.Fatalf("seq %d after the reboot: %+v%s, want fresh at its ts", i, v, transitionsOf(evs))
		}
	}
	recv += 20_000
	if _, evs := c.send(recv-100, recv, "smoke_alarm", 1, false, 6, false); len(evs) != 1 || evs[0].Transition != Raise {
		t.Fatalf("smoke after the reboot:%s", transitionsOf(evs))
	}
}
