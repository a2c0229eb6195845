package rules

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// run feeds (seconds, value) readings of one metric of one device and
// returns the transitions as a string such as ". R . C".
type reading struct {
	sec float64
	v   float64
}

func run(t *testing.T, e *Engine, l *devices.Ledger, dev, metric string, ch uint8, t0 int64, rs []reading) string {
	t.Helper()
	d, ok := l.Lookup([]byte(dev))
	if !ok {
		t.Fatalf("no device %s", dev)
	}
	m, ok := devices.MetricByName(d.Kind, metric)
	if !ok {
		t.Fatalf("no metric %s", metric)
	}
	var out []string
	for _, r := range rs {
		evs := evalOne(e, devices.Reading{Device: d.Index, Kind: d.Kind, Metric: m, Channel: ch, Value: r.v, Time: t0 + int64(r.sec*1000)})
		s := "."
		for _, ev := range evs {
			s = ev.Transition.String()[:1]
		}
		out = append(out, strings.ToUpper(s))
	}
	return strings.Join(out, " ")
}

// cst returns the Unix ms of a wall-clock time in China Standard Time.
func cst(s string) int64 {
	t, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.FixedZone("CST", 8*3600))
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func TestClearFor(t *testing.T) {
	e, l := mustEngine(t, `rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 5s, clear_for: 10s, severity: alarm}
`)
	got := run(t, e, l, "el-1", "residual_current_ma", 0, 0, []reading{
		{0, 350}, {5, 350}, // R at 5 s
		{6, 100}, {12, 100}, {13, 260}, // back above clear: the clearing count restarts
		{14, 100}, {23, 100}, {24, 100}, // C 10 s after 14
	})
	if want := ". R . . . . . C"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestTimeWindow(t *testing.T) {
	e, l := mustEngine(t, `rules:
  - id: night
    kind: charger
    metric: slot_temp_c
    above: 55
    clear: 50
    when: {time: "22:00-06:00"}
    severity: alarm
`)
	// 21:59:59 is outside; 22:00 is inside; the window crosses midnight and
	// ends at 06:00, where the still-hot slot clears.
	t0 := cst("2026-11-23 21:59:59")
	got := run(t, e, l, "ch-1", "slot_temp_c", 2, t0, []reading{
		{0, 58}, {1, 58}, {2*3600 + 1, 58}, {8*3600 - 1, 58}, {8*3600 + 1, 58}, {8*3600 + 2, 58},
	})
	if want := ". R . . C ."; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestWindowDays(t *testing.T) {
	w, err := parseWindow("22:00-06:00", []string{"fri"})
	if err != nil {
		t.Fatal(err)
	}
	off := int64(8 * 3600 * 1000)
	for _, c := range []struct {
		at   string
		want bool
	}{
		{"2026-11-27 21:59:00", false}, // Friday, before
		{"2026-11-27 22:00:00", true},  // Friday night
		{"2026-11-28 05:59:59", true},  // Saturday morning: Friday's window
		{"2026-11-28 06:00:00", false}, // end is exclusive
		{"2026-11-28 22:30:00", false}, // Saturday night
		{"2026-11-27 05:00:00", false}, // Friday morning belongs to Thursday
	} {
		if got := w.contains(cst(c.at) + off); got != c.want {
			t.Errorf("%s: %v, want %v", c.at, got, c.want)
		}
	}
	for _, bad := range []struct {
		time string
		days []string
		want string
	}{
		{"10:00-10:00", nil, "never matches"},
		{"25:00-06:00", nil, "not a time of day"},
		{"22:00", nil, "not a range"},
		{"", []string{}, "days is empty"},
		{"", []string{"funday"}, `"funday" is not a day`},
	} {
		if _, err := parseWindow(bad.time, bad.days); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q %v: %v, want %q", bad.time, bad.days, err, bad.want)
		}
	}
}

func TestZones(t *testing.T) {
	for _, z := range []string{"", "Asia/Shanghai", "+08:00", "UTC+8"} {
		loc, err := ParseZone(z)
		if err != nil {
			t.Fatalf("%q: %v", z, err)
		}
		if _, off := time.Unix(0, 0).In(loc).Zone(); off != 8*3600 {
			t.Errorf("%q: offset %d", z, off)
		}
	}
	if _, err := time.LoadLocation("America/New_York"); err == nil {
		if _, err := ParseZone("America/New_York"); err == nil || !strings.Contains(err.Error(), "daylight saving") {
			t.Errorf("a DST zone must be refused: %v", err)
		}
	}
	if _, err := Parse("r.yaml", []byte("timezone: Mars/Olympus\nrules: []\n")); err == nil {
		t.Error("an unknown zone must be refused")
	}
}

func TestRate(t *testing.T) {
	e, l := mustEngine(t, `rules:
  - {id: drop, kind: hydrant, metric: pressure_mpa, falls: 0.05, within: 10s, severity: warning}
`)
	tests := []struct {
		name string
		rs   []reading
		want string
	}{
		{"a fast drop", []reading{{0, 0.30}, {2, 0.30}, {4, 0.24}}, ". . R"},
		{"a slow drift is not a drop", []reading{{0, 0.30}, {8, 0.28}, {16, 0.26}, {24, 0.24}, {32, 0.22}}, ". . . . ."},
		// 0.05 lost between 9 s and 14 s straddles the 10 s window of the
		// first reference: the previous reading takes over.
		{"a drop across the window edge", []reading{{0, 0.30}, {9, 0.30}, {11, 0.29}, {14, 0.25}}, ". . . R"},
		// The drop last held at 8 s (measured from 0.30 at 0 s): one window later it clears.
		{"clears after a window without a drop", []reading{{0, 0.30}, {3, 0.20}, {8, 0.20}, {14, 0.20}, {17, 0.20}, {18, 0.20}}, ". R . . . C"},
		{"a rise after the drop is not a drop", []reading{{0, 0.20}, {1, 0.40}, {2, 0.38}}, ". . ."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ = mustEngine(t, `rules:
  - {id: drop, kind: hydrant, metric: pressure_mpa, falls: 0.05, within: 10s, severity: warning}
`)
			if got := run(t, e, l, "hy-1", "pressure_mpa", 0, 1_000_000, tt.rs); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
	e, _ = mustEngine(t, `rules:
  - {id: drop, kind: hydrant, metric: pressure_mpa, falls: 0.05, within: 10s, severity: warning}
`)
	d, _ := l.Lookup([]byte("hy-1"))
	m, _ := devices.MetricByName(d.Kind, "pressure_mpa")
	evalOne(e, devices.Reading{Device: d.Index, Metric: m, Value: 0.31, Time: 1_000})
	evs := evalOne(e, devices.Reading{Device: d.Index, Metric: m, Value: 0.22, Time: 5_000})
	if len(evs) != 1 || math.Abs(evs[0].Ref-0.31) > 1e-6 || evs[0].Since != 1_000 || evs[0].Value != 0.22 {
		t.Fatalf("a rate event must say from what and since when it changed: %+v", evs)
	}
	e, l = mustEngine(t, `rules:
  - {id: rise, kind: electrical, metric: cable_temp_c, rises: 10, within: 1m, severity: warning}
`)
	if got := run(t, e, l, "el-1", "cable_temp_c", 3, 0, []reading{{0, 40}, {30, 45}, {55, 50.5}, {56, 51}}); got != ". . R ." {
		t.Fatalf("cable rise: %s", got)
	}
}

const overrideLedger = `stations:
  - {id: st, name: S, grids: ["450204002"], endpoint: "http://127.0.0.1:1/x"}
devices:
  - {id: el-a, kind: electrical, model: BIG, grid: "450204002003"}
  - id: el-b
    kind: electrical
    grid: "450204002003"
    rules:
      electrical.phase_current.overload: {above: 63}
      electrical.residual_current.alarm: {above: 500, clear: 450}
  - {id: ch-a, kind: charger, grid: "450204002003", channels: 4}
`

func TestOverrides(t *testing.T) {
	set, err := Parse("r.yaml", []byte(`models:
  BIG:
    electrical.residual_current.alarm: {above: 400}
rules:
  - {id: electrical.residual_current.alarm, kind: electrical, metric: residual_current_ma, above: 300, severity: alarm}
  - {id: electrical.phase_current.overload, kind: electrical, metric: phase_current_a, above: per_device, severity: alarm}
  - {id: charger.slot_temp.alarm, kind: charger, metric: slot_temp_c, above: 65, severity: alarm}
`))
	if err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("ledger.yaml", []byte(overrideLedger))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	rc := []reading{{0, 350}, {1, 450}, {2, 550}}
	if got := run(t, e, l, "el-a", "residual_current_ma", 0, 0, rc); got != ". R ." {
		t.Errorf("model override to 400: %s", got)
	}
	if got := run(t, e, l, "el-b", "residual_current_ma", 0, 0, rc); got != ". . R" {
		t.Errorf("device override to 500: %s", got)
	}
	pc := []reading{{0, 70}}
	if got := run(t, e, l, "el-a", "phase_current_a", 2, 100_000, pc); got != "." {
		t.Errorf("per_device rule without a rating must be off: %s", got)
	}
	if got := run(t, e, l, "el-b", "phase_current_a", 2, 100_000, pc); got != "R" {
		t.Errorf("per_device rule rated 63 A: %s", got)
	}
	if got := run(t, e, l, "ch-a", "slot_temp_c", 5, 0, []reading{{0, 90}}); got != "." {
		t.Errorf("slot 5 of a 4-slot cabinet has no state: %s", got)
	}
	if got := run(t, e, l, "ch-a", "slot_temp_c", 4, 0, []reading{{0, 90}}); got != "R" {
		t.Errorf("slot 4: %s", got)
	}

	for _, c := range []struct{ rules, want string }{
		{"      electrical.nope: {above: 1}", `ledger.yaml:10: device "el-b": no electrical rule "electrical.nope" to override`},
		{"      electrical.residual_current.alarm: {below: 1}", `ledger.yaml:10: device "el-b": rule "electrical.residual_current.alarm" is a above rule`},
		{"      electrical.residual_current.alarm: {above: 300, clear: 400}", `ledger.yaml:10: device "el-b": rule "electrical.residual_current.alarm": clear 400 is above the threshold 300`},
		{"      electrical.residual_current.alarm: {abov: 300}", `field abov not found`},
	} {
		text := strings.Replace(overrideLedger, `      electrical.residual_current.alarm: {above: 500, clear: 450}`, c.rules, 1)
		l, err := devices.ParseLedger("ledger.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewEngine(set, l)
		var le *devices.LoadError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %s", c.rules, err, c.want)
		}
	}
	if _, err := Parse("r.yaml", []byte("models:\n  X:\n    no.such: {above: 1}\nrules: []\n")); err == nil || !strings.Contains(err.Error(), `r.yaml:3: models: X: no rule "no.such"`) {
		t.Errorf("model override of an unknown rule: %v", err)
	}
}

func TestAdmit(t *testing.T) {
	e, l := mustEngine(t, "rules:\n  - {id: s, kind: smoke, event: smoke_alarm, severity: fire}\n")
	d, _ := l.Lookup([]byte("sm-1"))
	gw := func(t int64, seq uint32, dig uint32) Stamp {
		return Stamp{Time: t, Recv: t, Seq: seq, HasSeq: true, HasTS: true, Trusted: true, Replay: true, Digest: dig}
	}
	own := func(t int64, seq uint32, dig uint32) Stamp {
		s := gw(t, seq, dig)
		s.Replay = false
		return s
	}
	at := func(s Stamp, recv int64) Stamp { s.Recv = recv; return s }
	for i, c := range []struct {
		s      Stamp
		want   Admission
		behind bool
	}{
		{gw(1000, 10, 1), Fresh, false},
		{gw(2000, 11, 2), Fresh, false},
		{gw(2000, 11, 2), Duplicate, false}, // the same message again
		{gw(1000, 10, 1), Duplicate, false}, // a replay of an older one
		{gw(1500, 5, 3), Late, false},       // older, never seen
		{gw(1500, 5, 3), Duplicate, false},
		{at(gw(1200, 12, 4), 2100), Fresh, true}, // a newer seq, an older ts: the gateway's clock went back
		{own(3000, 13, 5), Fresh, false},
		{own(2500, 9, 6), Late, false},            // reordered in transit: fills a gap, a little late
		{at(own(2600, 13, 7), 3100), Fresh, true}, // seq 13 again with other content: a restarted counter
		{own(4000, 14, 8), Fresh, false},          // and on from there
		{own(4000, 14, 8), Duplicate, false},
		{at(own(4000-ReorderTolerance-1, 3, 9), 4100), Fresh, true}, // too late for a reordering: a clock behind
		{gw(1000, 1, 1), Late, false},                               // an old replay beyond the window
		{gw(6000, 1000, 10), Fresh, false},                          // a jump forward
		{gw(6000, 1000, 10), Duplicate, false},
		{gw(6000, 1000, 11), Fresh, false}, // the same seq, another content, not older: evaluated
	} {
		v, _ := e.AdmitStamp(d.Index, &c.s, nil)
		if v.Admission != c.want || v.Behind != c.behind {
			t.Fatalf("step %d (t=%d seq=%d): %v behind %v, want %v behind %v", i, c.s.Time, c.s.Seq, v.Admission, v.Behind, c.want, c.behind)
		}
		if c.behind && v.Time != c.s.Recv {
			t.Fatalf("step %d: a clock behind is evaluated at its receive time, got %d", i, v.Time)
		}
	}
	if got := e.Admit(d.Index, 200_000, 0, false); got != Fresh {
		t.Fatalf("no seq: %v", got)
	}
}

// A device heard from across many weeks keeps exact `for` semantics while
// its base time moves forward.
func TestRebase(t *testing.T) {
	e, l := mustEngine(t, "rules:\n  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, for: 10s, severity: alarm}\n")
	var rs []reading
	day := 86400.0
	for i := 0; i < 60; i++ {
		rs = append(rs, reading{float64(i) * day, 100})
	}
	rs = append(rs, reading{60 * day, 350}, reading{60*day + 9.999, 350}, reading{60*day + 10, 350})
	got := run(t, e, l, "el-1", "residual_current_ma", 0, 1_795_000_000_000, rs)
	if !strings.HasSuffix(got, ". . R") || strings.Count(got, "R") != 1 {
		t.Fatalf("after 60 days: %s", got)
	}
}

// streamFrom turns fuzz bytes into a stream of readings over the test ledger.
func streamFrom(l *devices.Ledger, b []byte) []devices.Reading {
	values := []float64{0, 1, 20, 55, 59.9, 60, 65, 70, 100, 199, 200, 250, 299.99, 300, 350, 1000, 0.05, 0.1, 0.12, 0.14, 0.3,
		math.NaN(), math.Inf(1), math.Inf(-1), 5e-324, -5e-324, math.MaxFloat64, -1}
	var out []devices.Reading
	t := int64(1_795_000_000_000)
	for i := 0; i+3 < len(b); i += 4 {
		d := &l.Devices[int(b[i])%len(l.Devices)]
		ms := d.Kind.Metrics()
		m := ms[int(b[i+1])%len(ms)]
		t += int64(b[i+2]%64)*250 - 2000 // mostly forward, sometimes back
		out = append(out, devices.Reading{Device: d.Index, Kind: d.Kind, Metric: m, Channel: b[i+3] % 5,
			Value: values[int(b[i+3]/5)%len(values)], Time: t, Seq: uint32(i / 4)})
	}
	return out
}

// checkAlternation feeds a stream and fails if any (device, rule, channel)
// is raised twice without a clear between, or cleared without a raise.
func checkAlternation(t *testing.T, e *Engine, stream []devices.Reading) map[[3]any]int {
	t.Helper()
	state := map[[3]any]bool{}
	raises := map[[3]any]int{}
	for _, r := range stream {
		for _, ev := range e.Eval(r, e.Admit(r.Device, r.Time, r.Seq, true), nil) {
			k := [3]any{ev.Device, ev.Rule.ID, ev.Channel}
			switch ev.Transition {
			case Raise:
				if state[k] {
					t.Fatalf("%v raised twice for one continuous condition", k)
				}
				raises[k]++
			case Clear:
				if !state[k] {
					t.Fatalf("%v cleared without being raised", k)
				}
			}
			state[k] = ev.Transition == Raise
		}
	}
	return raises
}

func FuzzEval(f *testing.F) {
	set, err := Defaults()
	if err != nil {
		f.Fatal(err)
	}
	l := testLedger(f)
	f.Add([]byte{0, 0, 40, 70, 0, 0, 40, 70, 0, 0, 40, 70})
	f.Add([]byte{3, 14, 40, 36, 3, 14, 40, 41, 3, 14, 10, 36, 1, 5, 40, 130})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := NewEngine(set, l)
		if err != nil {
			t.Fatal(err)
		}
		checkAlternation(t, e, streamFrom(l, b))
	})
}

func TestRandomStreams(t *testing.T) {
	set, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	l := testLedger(t)
	rng := rand.New(rand.NewPCG(1, 2))
	raised := 0
	for i := 0; i < 200; i++ {
		b := make([]byte, 4000)
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		e, err := NewEngine(set, l)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range checkAlternation(t, e, streamFrom(l, b)) {
			raised += n
		}
	}
	if raised == 0 {
		t.Fatal("the random streams raised nothing: the test would not see a double raise")
	}
}

func TestReload(t *testing.T) {
	const v1 = `rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 10s, severity: alarm}
  - {id: ct, kind: electrical, metric: cable_temp_c, above: 70, severity: alarm}
`
	e1, l := mustEngine(t, v1)
	d, _ := l.Lookup([]byte("el-1"))
	rc, _ := devices.MetricByName(d.Kind, "residual_current_ma")
	ct, _ := devices.MetricByName(d.Kind, "cable_temp_c")
	feed := func(e *Engine, m devices.Metric, sec int64, v float64) []Event {
		return evalOne(e, devices.Reading{Device: d.Index, Metric: m, Channel: 1, Value: v, Time: sec * 1000})
	}
	feed(e1, rc, 0, 350) // pending since 0
	if evs := feed(e1, ct, 1, 80); len(evs) != 1 {
		t.Fatal("cable alarm not raised")
	}
	// Reload mid-pending: rc's threshold changes, ct stays, a rule is added.
	set2, err := Parse("v2.yaml", []byte(`rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 320, clear: 250, for: 10s, severity: alarm}
  - {id: ct, kind: electrical, metric: cable_temp_c, above: 70, severity: alarm}
  - {id: v, kind: electrical, metric: voltage_v, below: 198, severity: warning}
`))
	if err != nil {
		t.Fatal(err)
	}
	e2, err := NewEngine(set2, l)
	if err != nil {
		t.Fatal(err)
	}
	e2.Adopt(e1)
	if evs := feed(e2, ct, 2, 85); len(evs) != 0 {
		t.Fatalf("a firing rule raised again after reload: %+v", evs)
	}
	evs := feed(e2, rc, 10, 350)
	if len(evs) != 1 || evs[0].Transition != Raise || evs[0].Since != 0 || evs[0].Rule.Threshold != 320 {
		t.Fatalf("the pending for was lost or the new threshold not used: %+v", evs)
	}
	if evs := feed(e2, ct, 11, 60); len(evs) != 1 || evs[0].Transition != Clear {
		t.Fatalf("the adopted firing state does not clear: %+v", evs)
	}
}

// Reloading the same rules at every step of a random stream changes
// nothing: no event lost, none added.
func TestReloadUnderStream(t *testing.T) {
	set, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	l := testLedger(t)
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 40000)
	for j := range b {
		b[j] = byte(rng.UintN(256))
	}
	stream := streamFrom(l, b)
	collect := func(reloadEvery int) []Event {
		e, err := NewEngine(set, l)
		if err != nil {
			t.Fatal(err)
		}
		var all []Event
		for i, r := range stream {
			if reloadEvery > 0 && i%reloadEvery == 0 {
				e2, err := NewEngine(set, l)
				if err != nil {
					t.Fatal(err)
				}
				e2.Adopt(e)
				e = e2
			}
			all = append(all, e.Eval(r, e.Admit(r.Device, r.Time, r.Seq, true), nil)...)
		}
		return all
	}
	want, got := collect(0), collect(50)
	if len(want) == 0 {
		t.Fatal("the stream raised nothing")
	}
	if len(got) != len(want) {
		t.Fatalf("%d events with reloads, %d without", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Rule.ID != g.Rule.ID || w.Device != g.Device || w.Channel != g.Channel || w.Transition != g.Transition || w.Time != g.Time || w.Since != g.Since {
			t.Fatalf("event %d differs: %+v vs %+v", i, g, w)
		}
	}
}
