package rules

import (
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// Tests of issue 22's defects 6–9 and 11 in the rule engine and its
// configuration. Each failed on the code before the fix.

const dropRule = `rules:
  - {id: drop, kind: hydrant, metric: pressure_mpa, falls: 0.05, within: 10s, severity: warning}
`

// Defect 6: a sharp change after a plateau is raised; the window's extreme
// is not lost when the old reference expires.
func TestRateAfterPlateau(t *testing.T) {
	var rs []reading
	for s := 0; s < 20; s++ {
		rs = append(rs, reading{float64(s), 0.40}) // a plateau at 1 Hz
	}
	// The reference (0.40 at 10 s) expires at 21 s, when the previous
	// reading is already inside the drop.
	rs = append(rs, reading{20, 0.375}, reading{21, 0.35})
	e, l := mustEngine(t, dropRule)
	got := run(t, e, l, "hy-1", "pressure_mpa", 0, 1_000_000, rs)
	if !strings.HasSuffix(got, ". R") {
		t.Fatalf("0.40 → 0.35 in 2 s after a plateau: %s", got)
	}
	// The extreme of the window survives the expiry of the reference: the
	// high of 0.40 at 5 s is still in the window at 12 s.
	e, _ = mustEngine(t, dropRule)
	got = run(t, e, l, "hy-1", "pressure_mpa", 0, 1_000_000, []reading{{0, 0.39}, {5, 0.40}, {9, 0.38}, {12, 0.35}})
	if got != ". . . R" {
		t.Fatalf("drop from the window's high: %s", got)
	}
}

// Defect 7: a change of exactly the threshold fires, whatever float32 makes
// of the decimals.
func TestRateExactThreshold(t *testing.T) {
	for _, c := range []struct{ from, to float64 }{{0.40, 0.35}, {0.35, 0.30}, {0.15, 0.10}, {1.05, 1.00}} {
		e, l := mustEngine(t, dropRule)
		if got := run(t, e, l, "hy-1", "pressure_mpa", 0, 1_000_000, []reading{{0, c.from}, {1, c.to}}); got != ". R" {
			t.Errorf("%g → %g: %s", c.from, c.to, got)
		}
	}
	const rise = "rules:\n  - {id: rise, kind: electrical, metric: cable_temp_c, rises: 10, within: 1m, severity: warning}\n"
	for _, c := range []struct{ from, to float64 }{{25.3, 35.3}, {25.1, 35.1}, {60.7, 70.7}, {-3.3, 6.7}} {
		e, l := mustEngine(t, rise)
		if got := run(t, e, l, "el-1", "cable_temp_c", 1, 0, []reading{{0, c.from}, {1, c.to}}); got != ". R" {
			t.Errorf("%g → %g: %s", c.from, c.to, got)
		}
		e, _ = mustEngine(t, rise)
		if got := run(t, e, l, "el-1", "cable_temp_c", 1, 0, []reading{{0, c.from}, {1, c.to - 0.01}}); got != ". ." {
			t.Errorf("%g → %g is less than the threshold: %s", c.from, c.to-0.01, got)
		}
	}
}

// Defect 8: for and clear_for cannot be overridden on an event rule (it
// would silence a single smoke report) or a rate rule (it was ignored).
func TestOverrideForOnEventOrRate(t *testing.T) {
	for _, c := range []struct{ override, want string }{
		{"smoke.smoke_alarm: {for: 5s}", `rule "smoke.smoke_alarm" is a event rule: it has no for`},
		{"hydrant.pressure.drop: {clear_for: 5s}", `rule "hydrant.pressure.drop" is a falls rule: it has no for`},
	} {
		model := "models:\n  M:\n    " + c.override + "\n"
		_, err := Parse("r.yaml", []byte(model+string(defaultsRules(t))))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("models %s: %v, want %q", c.override, err, c.want)
		}
	}
	set, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("ledger.yaml", []byte(`stations:
  - {id: st, name: S, grids: ["450204002"], endpoint: "http://127.0.0.1:1/x"}
devices:
  - id: sm-a
    kind: smoke
    grid: "450204002003"
    rules:
      smoke.smoke_alarm: {for: 5s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewEngine(set, l); err == nil || !strings.Contains(err.Error(), "ledger.yaml:8") || !strings.Contains(err.Error(), "has no for") {
		t.Errorf("ledger for on an event rule: %v", err)
	}
}

// defaultsRules returns the rules: part of the default rule file.
func defaultsRules(t *testing.T) []byte {
	t.Helper()
	b := DefaultsYAML()
	i := strings.Index(string(b), "\nrules:")
	if i < 0 {
		t.Fatal("no rules: in defaults.yaml")
	}
	return b[i+1:]
}

// Defect 9: a ledger's channels caps the cable sensors, not the phases.
func TestChannelsCapSensorsOnly(t *testing.T) {
	set, err := Parse("r.yaml", []byte(`rules:
  - {id: ct, kind: electrical, metric: cable_temp_c, above: 70, severity: alarm}
  - {id: pc, kind: electrical, metric: phase_current_a, above: 60, severity: alarm}
  - {id: vl, kind: electrical, metric: voltage_v, below: 198, severity: warning}
`))
	if err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("ledger.yaml", []byte(`stations:
  - {id: st, name: S, grids: ["450204002"], endpoint: "http://127.0.0.1:1/x"}
devices:
  - {id: el-2ch, kind: electrical, grid: "450204002003", channels: 2}
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, e, l, "el-2ch", "cable_temp_c", 3, 0, []reading{{0, 90}}); got != "." {
		t.Errorf("cable sensor 3 of a 2-sensor device: %s", got)
	}
	if got := run(t, e, l, "el-2ch", "phase_current_a", 3, 0, []reading{{0, 90}}); got != "R" {
		t.Errorf("phase L3 current of a device with 2 cable sensors: %s", got)
	}
	if got := run(t, e, l, "el-2ch", "voltage_v", 3, 0, []reading{{0, 150}}); got != "R" {
		t.Errorf("phase L3 voltage of a device with 2 cable sensors: %s", got)
	}
}

// Defect 11: a windowed rate rule clears at the first reading after its
// window; a threshold override keeps the rule's hysteresis; a device can
// switch on a rule its model switched off.
func TestRateWindowEndClears(t *testing.T) {
	e, l := mustEngine(t, `rules:
  - {id: rise, kind: charger, metric: slot_temp_c, rises: 10, within: 10m, when: {time: "22:00-06:00"}, severity: alarm}
`)
	t0 := cst("2026-11-24 05:58:00")
	got := run(t, e, l, "ch-1", "slot_temp_c", 1, t0, []reading{{0, 30}, {60, 45}, {121, 46}})
	if got != ". R C" {
		t.Fatalf("the rise at 05:59 must clear at the first reading after 06:00: %s", got)
	}
}

func TestOverrideKeepsHysteresisAndReenables(t *testing.T) {
	set, err := Parse("r.yaml", []byte(`models:
  QUIET:
    rc: {off: true}
rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, severity: alarm}
`))
	if err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("ledger.yaml", []byte(`stations:
  - {id: st, name: S, grids: ["450204002"], endpoint: "http://127.0.0.1:1/x"}
devices:
  - id: el-a
    kind: electrical
    grid: "450204002003"
    rules:
      rc: {above: 500}
  - id: el-b
    kind: electrical
    model: QUIET
    grid: "450204002003"
    rules:
      rc: {off: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	// Threshold 500, clear moved with it to 450: 480 keeps the alarm.
	if got := run(t, e, l, "el-a", "residual_current_ma", 0, 0, []reading{{0, 520}, {1, 480}, {2, 440}}); got != "R . C" {
		t.Errorf("override above 500 keeps the 50 mA hysteresis: %s", got)
	}
	if got := run(t, e, l, "el-b", "residual_current_ma", 0, 0, []reading{{0, 350}}); got != "R" {
		t.Errorf("the device switched the rule back on: %s", got)
	}
}

// Within the last 64 seqs of a gateway's device, seq order wins: a replay of
// a seq evaluated before changes nothing whatever its ts reads as, and a seq
// never seen that no ts can place may raise an event but not clear one.
func TestGatewaySeqOrder(t *testing.T) {
	e, l := mustEngine(t, "rules:\n  - {id: tilt, kind: hydrant, event: tilt, severity: alarm}\n")
	d, _ := l.Lookup([]byte("hy-1"))
	m, _ := devices.MetricByName(d.Kind, "tilt")
	feed := func(s Stamp, v float64) (Admission, []Event) {
		s.HasSeq, s.Replay = true, true
		s.HasTS = s.Trusted
		vd, _ := e.AdmitStamp(d.Index, &s, nil)
		return vd.Admission, e.Eval(devices.Reading{Device: d.Index, Kind: d.Kind, Metric: m, Value: v, Time: vd.Time}, vd.Admission, nil)
	}
	const t0 = int64(1_795_000_000_000)
	feed(Stamp{Time: t0, Recv: t0, Seq: 1, Trusted: true, Digest: 1}, 1)               // raised
	feed(Stamp{Time: t0 + 1000, Recv: t0 + 1000, Seq: 2, Trusted: true, Digest: 2}, 0) // ended
	for i := uint32(3); i < 10; i++ {
		feed(Stamp{Time: t0 + int64(i)*1000, Recv: t0 + int64(i)*1000, Seq: i, Trusted: true, Digest: i}, 0)
	}
	// The clock went back an hour: seq 1 replayed now reads as new. Its
	// digest is no longer remembered (four seqs back).
	if adm, evs := feed(Stamp{Time: t0 + 3_600_000, Recv: t0 + 20_000, Seq: 1, Trusted: true, Digest: 99}, 1); adm != Superseded || len(evs) != 0 {
		t.Fatalf("a replay of seq 1: %v %+v", adm, evs)
	}
	// Seq 10 raises, seq 12 ends it; seq 11, never seen, without a
	// believable clock: it cannot clear, but a raise it could.
	feed(Stamp{Time: t0 + 10_000, Recv: t0 + 10_000, Seq: 10, Trusted: true, Digest: 10}, 1)
	if adm, evs := feed(Stamp{Time: t0 + 21_000, Recv: t0 + 21_000, Seq: 12, Digest: 12}, 0); adm != Fresh || len(evs) != 1 || evs[0].Transition != Clear {
		t.Fatalf("seq 12 ends the tilt: %v %+v", adm, evs)
	}
	if adm, evs := feed(Stamp{Time: t0 + 22_000, Recv: t0 + 22_000, Seq: 11, Digest: 11}, 1); adm != Unordered || len(evs) != 1 || evs[0].Transition != Raise {
		t.Fatalf("seq 11 (tilted), unplaceable: %v %+v, want a raise", adm, evs)
	}
	if adm, evs := feed(Stamp{Time: t0 + 23_000, Recv: t0 + 23_000, Seq: 13, Trusted: true, Digest: 13}, 1); len(evs) != 0 {
		t.Fatalf("seq 13: %v %+v", adm, evs)
	}
	e2, _ := mustEngine(t, "rules:\n  - {id: tilt, kind: hydrant, event: tilt, severity: alarm}\n")
	e = e2
	feed(Stamp{Time: t0, Recv: t0, Seq: 1, Trusted: true, Digest: 1}, 0)
	feed(Stamp{Time: t0 + 2000, Recv: t0 + 2000, Seq: 3, Trusted: true, Digest: 3}, 1) // raised
	if adm, evs := feed(Stamp{Time: t0 + 3000, Recv: t0 + 3000, Seq: 2, Digest: 2}, 0); adm != Unordered || len(evs) != 0 {
		t.Fatalf("an unplaceable end cleared: %v %+v", adm, evs)
	}
}
