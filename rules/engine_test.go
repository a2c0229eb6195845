package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

func testLedger(t testing.TB) *devices.Ledger {
	t.Helper()
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// evalOne admits and evaluates a message of one reading.
func evalOne(e *Engine, r devices.Reading) []Event {
	return e.Eval(r, e.Admit(r.Device, r.Time, r.Seq, false), nil)
}

func mustEngine(t testing.TB, yaml string) (*Engine, *devices.Ledger) {
	t.Helper()
	set, err := Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	l := testLedger(t)
	e, err := NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	return e, l
}

// step is one reading of a scenario and the transition it must cause (0 = none).
type step struct {
	sec   int64 // device time, seconds
	value float64
	want  Transition
}

func TestThresholdSemantics(t *testing.T) {
	const rules = `rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 10s, severity: alarm}
  - {id: p, kind: hydrant, metric: pressure_mpa, below: 0.10, clear: 0.12, severity: alarm}
`
	tests := []struct {
		name   string
		device string
		metric string
		steps  []step
	}{
		{"below threshold never fires", "el-1", "residual_current_ma", []step{{0, 299.9, 0}, {20, 299.99, 0}}},
		{"exactly at the threshold counts as above", "el-1", "residual_current_ma", []step{{0, 300, 0}, {10, 300, Raise}}},
		{"fires only after for has elapsed", "el-1", "residual_current_ma", []step{{0, 350, 0}, {5, 350, 0}, {9, 400, 0}, {10, 350, Raise}, {11, 350, 0}}},
		{"for interrupted restarts the count", "el-1", "residual_current_ma", []step{{0, 350, 0}, {8, 299, 0}, {9, 350, 0}, {18, 350, 0}, {19, 350, Raise}}},
		{"hysteresis band holds the alarm", "el-1", "residual_current_ma", []step{{0, 350, 0}, {10, 350, Raise}, {11, 260, 0}, {12, 250, 0}, {13, 299, 0}, {14, 249.9, Clear}}},
		{"after clear it must hold for again", "el-1", "residual_current_ma", []step{{0, 350, 0}, {10, 350, Raise}, {11, 100, Clear}, {12, 350, 0}, {21, 350, 0}, {22, 350, Raise}}},
		{"below is strict", "hy-1", "pressure_mpa", []step{{0, 0.10, 0}, {1, 0.0999, Raise}}},
		{"below clears at the clear level", "hy-1", "pressure_mpa", []step{{0, 0.05, Raise}, {1, 0.119, 0}, {2, 0.12, Clear}}},
		{"late reading is not evaluated", "el-1", "residual_current_ma", []step{{0, 350, 0}, {10, 350, Raise}, {5, 0, 0}, {11, 350, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, l := mustEngine(t, rules)
			d, _ := l.Lookup([]byte(tt.device))
			m, _ := devices.MetricByName(d.Kind, tt.metric)
			for i, s := range tt.steps {
				r := devices.Reading{Device: d.Index, Kind: d.Kind, Metric: m, Value: s.value, Time: 1_700_000_000_000 + s.sec*1000}
				evs := evalOne(e, r)
				var got Transition
				if len(evs) > 1 {
					t.Fatalf("step %d: %d events, want at most 1", i, len(evs))
				}
				if len(evs) == 1 {
					got = evs[0].Transition
				}
				if got != s.want {
					t.Fatalf("step %d (t=%ds, v=%g): transition %v, want %v", i, s.sec, s.value, got, s.want)
				}
			}
		})
	}
}

func TestEventCarriesExplanation(t *testing.T) {
	e, l := mustEngine(t, `rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 10s, severity: alarm}
`)
	d, _ := l.Lookup([]byte("el-1"))
	m, _ := devices.MetricByName(d.Kind, "residual_current_ma")
	t0 := int64(1_700_000_000_000)
	evalOne(e, devices.Reading{Device: d.Index, Metric: m, Value: 320, Time: t0})
	evs := evalOne(e, devices.Reading{Device: d.Index, Metric: m, Value: 356, Time: t0 + 12_000, Seq: 7})
	if len(evs) != 1 {
		t.Fatalf("got %d events", len(evs))
	}
	ev := evs[0]
	if ev.Rule.ID != "rc" || ev.Rule.Threshold != 300 || ev.Value != 356 || ev.Since != t0 || ev.Time != t0+12_000 || ev.Seq != 7 || ev.Device != d.Index {
		t.Fatalf("event = %+v", ev)
	}
	if ev.Rule.For != 10*time.Second || ev.Rule.Severity != SeverityAlarm {
		t.Fatalf("rule = %+v", ev.Rule)
	}
}

func TestChannelsAreIndependent(t *testing.T) {
	e, l := mustEngine(t, `rules:
  - {id: st, kind: charger, metric: slot_temp_c, above: 65, clear: 60, severity: alarm, action: cut_power}
`)
	d, _ := l.Lookup([]byte("ch-1"))
	m, _ := devices.MetricByName(d.Kind, "slot_temp_c")
	r := devices.Reading{Device: d.Index, Metric: m, Value: 70, Time: 1, Channel: 3}
	if evs := evalOne(e, r); len(evs) != 1 || evs[0].Channel != 3 || evs[0].Rule.Action != "cut_power" {
		t.Fatalf("slot 3: %+v", evs)
	}
	r.Channel = 4
	if evs := evalOne(e, r); len(evs) != 1 || evs[0].Channel != 4 {
		t.Fatalf("slot 4 must raise on its own: %+v", evs)
	}
	r.Channel, r.Value = 3, 20
	if evs := evalOne(e, r); len(evs) != 1 || evs[0].Transition != Clear || evs[0].Channel != 3 {
		t.Fatalf("slot 3 clear: %+v", evs)
	}
	r.Channel = 17
	if evs := evalOne(e, r); len(evs) != 0 {
		t.Fatalf("a channel beyond the catalog must be ignored: %+v", evs)
	}
}

func TestEvents(t *testing.T) {
	set, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	l := testLedger(t)
	e, err := NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := l.Lookup([]byte("sm-1"))
	m, _ := devices.MetricByName(d.Kind, "smoke_alarm")
	r := devices.Reading{Device: d.Index, Metric: m, Value: 1, Time: 100}
	evs := evalOne(e, r)
	if len(evs) != 1 || evs[0].Transition != Raise || evs[0].Rule.Severity != SeverityFire {
		t.Fatalf("smoke_alarm: %+v", evs)
	}
	r.Time = 120
	if evs := evalOne(e, r); len(evs) != 0 {
		t.Fatalf("repeated smoke_alarm while firing must not raise again: %+v", evs)
	}
	bat, _ := devices.MetricByName(d.Kind, "battery_pct")
	evalOne(e, devices.Reading{Device: d.Index, Metric: bat, Value: 90, Time: 200})
	r.Time, r.Value = 50, 0 // late, and older than the raise: it cannot undo it
	if evs := evalOne(e, r); len(evs) != 0 {
		t.Fatalf("an end older than the raise cleared it: %+v", evs)
	}
	r.Time = 150 // late, but newer than the last smoke report: events are evaluated
	if evs := evalOne(e, r); len(evs) != 1 || evs[0].Transition != Clear {
		t.Fatalf("smoke_alarm ended: %+v", evs)
	}
}

func TestDefaultsCoverEveryKind(t *testing.T) {
	set, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	var kinds [devices.NumKinds]int
	for _, r := range set.Rules {
		kinds[r.Kind]++
	}
	for k := devices.KindElectrical; k < devices.NumKinds; k++ {
		if kinds[k] == 0 {
			t.Errorf("no default rule for %s", k)
		}
	}
}

func TestValidation(t *testing.T) {
	tests := []struct{ rule, want string }{
		{"{id: a, kind: smoke, metric: residual_current_ma, above: 1, severity: alarm}", `smoke has no metric or event "residual_current_ma"`},
		{"{id: a, kind: electrical, metric: residual_current_ma, above: 300, clear: 350, severity: alarm}", "clear 350 is above the threshold 300"},
		{"{id: a, kind: hydrant, metric: pressure_mpa, below: 0.1, clear: 0.05, severity: alarm}", "clear 0.05 is below the threshold 0.1"},
		{"{id: a, kind: hydrant, metric: pressure_mpa, below: 0.1, above: 2, severity: alarm}", "exactly one of above, below, rises, falls or event"},
		{"{id: a, kind: hydrant, metric: pressure_mpa, below: 0.1, severity: panic}", `unknown severity "panic"`},
		{"{id: a, kind: hydrant, metric: pressure_mpa, below: 0.1, for: 10 minutes, severity: alarm}", "for: time: unknown unit"},
		{"{id: a, kind: hydrant, metric: pressure_mpa, below: 50, severity: alarm}", "outside the plausible range"},
		{"{id: a, kind: smoke, event: smoke_alarm, for: 5s, severity: fire}", "an event rule has no for duration"},
		{"{id: a, kind: smoke, metric: smoke_alarm, above: 1, severity: fire}", `"smoke_alarm" is an event`},
		{"{id: a, kind: smoke, event: battery_pct, severity: fire}", "is a measured metric, not an event"},
		{"{id: a, kind: charger, event: smoke, severity: fire, action: explode}", `unknown action "explode"`},
		{"{kind: charger, event: smoke, severity: fire}", "id is missing"},
		{"{id: a, kind: charger, event: smoke, severity: fire, treshold: 3}", "field treshold not found"},
	}
	for _, tt := range tests {
		_, err := Parse("r.yaml", []byte("rules:\n  - "+tt.rule+"\n"))
		var le *devices.LoadError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), tt.want) || le.Problems[0].Line != 2 {
			t.Errorf("%s:\n got %v\nwant r.yaml:2: …%s", tt.rule, err, tt.want)
		}
	}
	_, err := Parse("r.yaml", []byte(`rules:
  - {id: a, kind: smoke, event: smoke_alarm, severity: fire}
  - {id: a, kind: smoke, event: tamper, severity: fault}
`))
	if err == nil || !strings.Contains(err.Error(), `r.yaml:3: rule "a": duplicate id (first at line 2)`) {
		t.Errorf("duplicate id: %v", err)
	}
}
