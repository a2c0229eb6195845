package sim_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

func TestParseScenario(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want sim.Scenario
		err  string
	}{
		{in: "fire:450204002003", want: sim.Scenario{Kind: sim.ScenarioFire, Target: "450204002003"}},
		{in: "fire:sm-450204-0002", want: sim.Scenario{Kind: sim.ScenarioFire, Target: "sm-450204-0002"}},
		{in: "charger-overheat", want: sim.Scenario{Kind: sim.ScenarioChargerOverheat}},
		{in: "charger-overheat:", want: sim.Scenario{Kind: sim.ScenarioChargerOverheat}},
		{in: "charger-overheat:ch-450204-0003", want: sim.Scenario{Kind: sim.ScenarioChargerOverheat, Target: "ch-450204-0003"}},
		{in: " hydrant-pressure-loss ", want: sim.Scenario{Kind: sim.ScenarioHydrantPressureLoss}},
		{in: "", err: "unknown name"},
		{in: "flood:450204002003", err: "unknown name"},
		{in: "Fire:450204002003", err: "unknown name"},
		{in: "fire", err: "say where"},
		{in: "fire:", err: "say where"},
		{in: "fire:柳南区", err: "target"},
		{in: "hydrant-pressure-loss:hy 1", err: "target"},
		{in: "charger-overheat:" + strings.Repeat("x", 65), err: "longer than 64"},
	} {
		got, err := sim.ParseScenario(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, sim.ErrScenario) {
				t.Errorf("ParseScenario(%q) = %v, %v; want an ErrScenario containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseScenario(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if s := got.String(); !strings.HasPrefix(strings.TrimSpace(tc.in), s) {
			t.Errorf("%+v.String() = %q", got, s)
		}
	}
}

func TestStartErrors(t *testing.T) {
	l := demoLedger(t, 300)
	f := sim.NewFleet(l, 1)
	for _, in := range []string{
		"fire:450204002999",                    // a village code with no devices
		"fire:no-such-device",                  // neither a device nor a code
		"charger-overheat:ch-999999-0001",      // unknown device
		"charger-overheat:el-450204-0001",      // not a charger
		"hydrant-pressure-loss:ch-450204-0003", // not a hydrant
	} {
		sc, err := sim.ParseScenario(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if err := f.Check(sc); err == nil || !errors.Is(err, sim.ErrScenario) {
			t.Errorf("Check(%s) = %v; want an ErrScenario", in, err)
		}
		if inc, err := f.Start(sc, t0); err == nil || !errors.Is(err, sim.ErrScenario) {
			t.Errorf("Start(%s) = %v, %v; want an ErrScenario", in, inc, err)
		}
	}
	// A ledger without chargers cannot overheat one.
	small := demoLedger(t, 2) // an electrical monitor and a smoke detector
	sc, _ := sim.ParseScenario("charger-overheat")
	if _, err := sim.NewFleet(small, 1).Start(sc, t0); err == nil {
		t.Error("charger-overheat started in a ledger without chargers")
	}
}

// series is the readings of one metric of one device channel.
type series []reading

func collect(rs []reading, id, metric string, ch int) series {
	var s series
	for _, r := range rs {
		if r.dev.ID != id {
			continue
		}
		if _, ok := r.M[metric]; !ok {
			continue
		}
		if ch > 0 && (r.Ch == nil || *r.Ch != ch) {
			continue
		}
		s = append(s, r)
	}
	return s
}

// checkHeld asserts that the metric is dangerous (by danger) no later than
// within after start, then stays dangerous with readings no more than
// maxGap apart for at least hold. Devices in an incident report every
// second; an electrical monitor cycles through its residual current and
// four cable channels, so each channel comes every 5–6 s.
func checkHeld(t *testing.T, s series, metric string, start time.Time, within, hold time.Duration, danger func(float64) bool) {
	t.Helper()
	maxGap := 3 * time.Second
	if metric == "cable_temp_c" {
		maxGap = 7 * time.Second
	}
	var since time.Time
	var last time.Time
	for _, r := range s {
		if r.at.Before(start) {
			continue
		}
		v := r.M[metric]
		if since.IsZero() {
			if danger(v) {
				since, last = r.at, r.at
				if r.at.Sub(start) > within {
					t.Errorf("%s %s reached the danger at +%v, want within %v", r.dev.ID, metric, r.at.Sub(start), within)
				}
			}
			continue
		}
		if r.at.After(since.Add(hold)) {
			break
		}
		if !danger(v) {
			t.Errorf("%s %s=%g at +%v: left the danger before holding %v", r.dev.ID, metric, v, r.at.Sub(start), hold)
			return
		}
		if gap := r.at.Sub(last); gap > maxGap {
			t.Errorf("%s %s: %v without a reading at +%v", r.dev.ID, metric, gap, r.at.Sub(start))
		}
		last = r.at
	}
	if since.IsZero() {
		t.Errorf("%s: never dangerous after the start (%d readings)", metric, len(s))
		return
	}
	if last.Sub(since) < hold-maxGap {
		t.Errorf("%s: dangerous readings only from +%v to +%v, want %v", metric, since.Sub(start), last.Sub(start), hold)
	}
}

// TestScenarios drives the fleet with a fake clock at a high and a low
// message rate and checks that each scenario crosses its default alarm
// threshold (DOMAIN.md) within the stated time and holds it for MinHold.
func TestScenarios(t *testing.T) {
	l := demoLedger(t, 300)
	for _, step := range []time.Duration{10 * time.Millisecond, 500 * time.Millisecond} {
		for _, tc := range []struct {
			scenario string
			check    func(t *testing.T, rs []reading, in *sim.Incident)
		}{
			{"charger-overheat", func(t *testing.T, rs []reading, in *sim.Incident) {
				s := collect(rs, in.Devices[0], "slot_temp_c", in.Slot)
				checkHeld(t, s, "slot_temp_c", in.Start, 20*time.Second, sim.MinHold, func(v float64) bool { return v >= 65 })
				checkHeld(t, s, "slot_temp_c", in.Start, 15*time.Second, sim.MinHold, func(v float64) bool { return v >= 55 })
				checkHeld(t, s, "slot_temp_c", in.Start, 31*time.Second, sim.MinHold, func(v float64) bool { return v >= 78 })
				for _, r := range s {
					if r.at.After(in.Start) && r.M["slot_current_a"] == 0 {
						t.Fatalf("overheating slot is not charging: %+v", r.M)
					}
				}
			}},
			{"hydrant-pressure-loss:hy-330326-0004", func(t *testing.T, rs []reading, in *sim.Incident) {
				s := collect(rs, "hy-330326-0004", "pressure_mpa", 0)
				checkHeld(t, s, "pressure_mpa", in.Start, 20*time.Second, sim.MinHold, func(v float64) bool { return v < 0.10 })
				checkHeld(t, s, "pressure_mpa", in.Start, 21*time.Second, sim.MinHold, func(v float64) bool { return v <= 0.06 })
			}},
			{"fire:450204002003", func(t *testing.T, rs []reading, in *sim.Incident) {
				var smoke, el int
				for _, d := range l.Devices {
					if d.Grid != "450204002003" {
						continue
					}
					switch d.Kind {
					case devices.KindSmoke:
						smoke++
						checkSmokeAlarm(t, rs, d.ID, in.Start, 16*time.Second)
					case devices.KindElectrical:
						el++
						for ch := 1; ch <= 4; ch++ {
							checkHeld(t, collect(rs, d.ID, "cable_temp_c", ch), "cable_temp_c", in.Start, 21*time.Second, sim.MinHold, func(v float64) bool { return v >= 70 })
						}
					}
				}
				if smoke == 0 || el == 0 || len(in.Devices) != smoke+el {
					t.Errorf("fire drove %v; village has %d smoke detectors, %d electrical monitors", in.Devices, smoke, el)
				}
				if !strings.Contains(in.String(), "龙屯社区") || !strings.Contains(in.String(), "450204002003") {
					t.Errorf("incident line %q", in.String())
				}
			}},
			{"fire:el-500230-0001", func(t *testing.T, rs []reading, in *sim.Incident) {
				if d, _ := l.Lookup([]byte("el-500230-0001")); in.Grid != d.Grid {
					t.Errorf("fire at device el-500230-0001 is in %s, want its village %s", in.Grid, d.Grid)
				}
				checkHeld(t, collect(rs, "el-500230-0001", "cable_temp_c", 2), "cable_temp_c", in.Start, 21*time.Second, sim.MinHold, func(v float64) bool { return v >= 70 })
			}},
		} {
			t.Run(tc.scenario+"/"+step.String(), func(t *testing.T) {
				sc, err := sim.ParseScenario(tc.scenario)
				if err != nil {
					t.Fatal(err)
				}
				f := sim.NewFleet(l, 3)
				start := t0.Add(7 * time.Second)
				var in *sim.Incident
				rs := drive(t, l, f, t0, 3*time.Minute, step, func(now time.Time) {
					if in == nil && !now.Before(start) {
						if in, err = f.Start(sc, now); err != nil {
							t.Fatal(err)
						}
					}
				})
				tc.check(t, rs, in)
				// Nothing but the scenario's own devices leaves the normal range.
				driven := map[string]bool{}
				for _, id := range in.Devices {
					driven[id] = true
				}
				for _, r := range rs {
					if driven[r.dev.ID] {
						continue
					}
					for name, v := range r.M {
						if lo, hi := normalRange(name); v < lo || v > hi {
							t.Errorf("bystander %s: %s=%g", r.dev.ID, name, v)
						}
					}
				}
			})
		}
	}
}

// checkSmokeAlarm asserts that the detector raises smoke_alarm once within
// `within` of start and does not end it.
func checkSmokeAlarm(t *testing.T, rs []reading, id string, start time.Time, within time.Duration) {
	t.Helper()
	var on int
	for _, r := range rs {
		if r.dev.ID != id || r.Event == nil || *r.Event != "smoke_alarm" {
			continue
		}
		if !r.active() {
			t.Errorf("%s ended its smoke alarm at +%v while the fire is held", id, r.at.Sub(start))
			continue
		}
		on++
		if d := r.at.Sub(start); d < 0 || d > within {
			t.Errorf("%s: smoke_alarm at +%v, want within %v", id, d, within)
		}
	}
	if on != 1 {
		t.Errorf("%s sent %d smoke_alarm events, want 1", id, on)
	}
}

// TestScenarioRecovers checks that a scenario with a Hold returns to normal
// after it: the dangerous values clear and smoke alarms end.
func TestScenarioRecovers(t *testing.T) {
	l := demoLedger(t, 300)
	for _, name := range []string{"fire:450204002003", "charger-overheat", "hydrant-pressure-loss"} {
		t.Run(name, func(t *testing.T) {
			sc, err := sim.ParseScenario(name)
			if err != nil {
				t.Fatal(err)
			}
			sc.Hold = 30 * time.Second // raised to MinHold
			f := sim.NewFleet(l, 5)
			in, err := f.Start(sc, t0)
			if err != nil {
				t.Fatal(err)
			}
			// Peak after at most 30 s, hold 90 s, fall 60 s: normal after 3 min.
			rs := drive(t, l, f, t0, 5*time.Minute, 50*time.Millisecond, nil)
			driven := map[string]bool{}
			for _, id := range in.Devices {
				driven[id] = true
			}
			ended := map[string]bool{}
			var held bool
			for _, r := range rs {
				if !driven[r.dev.ID] {
					continue
				}
				if r.Event != nil && *r.Event == "smoke_alarm" && !r.active() {
					if r.at.Sub(t0) < 20*time.Second+sim.MinHold {
						t.Errorf("%s ended its alarm at +%v, before the hold", r.dev.ID, r.at.Sub(t0))
					}
					ended[r.dev.ID] = true
				}
				for metric, v := range r.M {
					lo, hi := normalRange(metric)
					bad := v < lo || v > hi
					if r.at.Sub(t0) > 30*time.Second+sim.MinHold-time.Second && r.at.Sub(t0) < 30*time.Second+sim.MinHold {
						held = held || bad
					}
					if r.at.After(t0.Add(3*time.Minute+time.Second)) && bad {
						t.Errorf("%s at +%v: %s=%g not back to normal", r.dev.ID, r.at.Sub(t0), metric, v)
					}
				}
			}
			if !held {
				t.Error("no dangerous value at the end of the hold")
			}
			for _, d := range l.Devices {
				if driven[d.ID] && d.Kind == devices.KindSmoke && !ended[d.ID] {
					t.Errorf("%s never ended its smoke alarm", d.ID)
				}
			}
		})
	}
}
