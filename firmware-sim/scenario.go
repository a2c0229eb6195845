package sim

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// ScenarioKind names an incident scenario.
type ScenarioKind uint8

// Scenario kinds.
const (
	// ScenarioFire: a fire (火灾) in a village. Its smoke detectors send
	// smoke_alarm within about 15 s, one after another as the smoke spreads,
	// and the cable temperatures of its electrical-fire monitors rise past
	// 70 °C within about 20 s, peaking near 85–95 °C.
	ScenarioFire ScenarioKind = iota + 1
	// ScenarioChargerOverheat: one charging slot of a cabinet heats from
	// 40 °C to about 80 °C over 30 s (warning 55 after ~11 s, alarm 65
	// after ~19 s), the start of a battery thermal runaway.
	ScenarioChargerOverheat
	// ScenarioHydrantPressureLoss: a hydrant's pressure falls from its
	// normal ~0.3 MPa to 0.05 MPa over 20 s (opened, broken or water
	// theft) and stays there.
	ScenarioHydrantPressureLoss
)

var scenarioNames = [...]string{"", "fire", "charger-overheat", "hydrant-pressure-loss"}
var scenarioZH = [...]string{"", "火灾", "充电柜过热", "消火栓失压"}

func (k ScenarioKind) String() string {
	if int(k) >= len(scenarioNames) || k == 0 {
		return fmt.Sprintf("scenario(%d)", uint8(k))
	}
	return scenarioNames[k]
}

// ZH returns the Chinese name of the scenario.
func (k ScenarioKind) ZH() string {
	if int(k) >= len(scenarioZH) {
		return ""
	}
	return scenarioZH[k]
}

// Ramp durations: how long each scenario takes from normal to its peak.
const (
	fireRise     = 20 * time.Second
	overheatRise = 30 * time.Second
	lossRise     = 20 * time.Second
	recoverFall  = 60 * time.Second
	// smokeSpread is the window in which a village's detectors alarm.
	smokeSpread = 15 * time.Second
)

// MinHold is the shortest time a scenario holds its dangerous values after
// reaching them: the default rules need a condition to last up to 60 s
// (DOMAIN.md), and the margin covers a centre that is a little behind.
const MinHold = 90 * time.Second

// Scenario is a named incident, parsed from "name" or "name:target".
type Scenario struct {
	Kind ScenarioKind
	// Target is a 12-digit village code or a device id (fire), or a device
	// id or "" for the first device of the kind (charger-overheat,
	// hydrant-pressure-loss).
	Target string
	// Hold is how long the dangerous values are held once they reach their
	// peak before the devices recover; 0 holds them until the fleet stops.
	// A positive Hold shorter than MinHold is raised to MinHold.
	Hold time.Duration
}

func (s Scenario) String() string {
	if s.Target == "" {
		return s.Kind.String()
	}
	return s.Kind.String() + ":" + s.Target
}

// ErrScenario is wrapped by every error of ParseScenario and Fleet.Start.
var ErrScenario = errors.New("scenario")

// ParseScenario parses "fire:<village code or device id>",
// "charger-overheat[:<device id>]" or "hydrant-pressure-loss[:<device id>]".
// Whether the target exists is checked by Fleet.Start.
func ParseScenario(s string) (Scenario, error) {
	name, target, _ := strings.Cut(strings.TrimSpace(s), ":")
	var sc Scenario
	for k := ScenarioFire; int(k) < len(scenarioNames); k++ {
		if scenarioNames[k] == name {
			sc.Kind = k
		}
	}
	if sc.Kind == 0 {
		return sc, fmt.Errorf("%w %q: unknown name %q (want fire:<village code or device id>, charger-overheat[:<device id>] or hydrant-pressure-loss[:<device id>])", ErrScenario, s, name)
	}
	sc.Target = target
	if target == "" {
		if sc.Kind == ScenarioFire {
			return sc, fmt.Errorf("%w %q: say where: fire:<12-digit village code> or fire:<device id>", ErrScenario, s)
		}
		return sc, nil
	}
	if err := devices.CheckID(target); err != nil {
		return sc, fmt.Errorf("%w %q: target: %v", ErrScenario, s, err)
	}
	return sc, nil
}

// Incident describes a scenario that has started.
type Incident struct {
	Scenario Scenario
	Start    time.Time
	// Peak is when the dangerous values reach their peak; thresholds on
	// the way are crossed earlier.
	Peak time.Time
	// Grid is the village of the incident and Place its name from the
	// ledger (e.g. 柳州市柳南区潭西街道龙屯社区).
	Grid  devices.Grid
	Place string
	// Devices are the ids of the devices the scenario drives.
	Devices []string
	// Slot is the overheating slot (1-based) of charger-overheat.
	Slot int

	smoke, electrical int // counts for String
}

// String describes the incident in English and Chinese on one line, for
// the operator running the simulator.
func (in *Incident) String() string {
	var en, zh string
	switch in.Scenario.Kind {
	case ScenarioFire:
		en = fmt.Sprintf("%d smoke detectors, %d electrical monitors", in.smoke, in.electrical)
		zh = fmt.Sprintf("烟感%d个、电气火灾监控%d个", in.smoke, in.electrical)
	case ScenarioChargerOverheat:
		en = fmt.Sprintf("%s slot %d", in.Devices[0], in.Slot)
		zh = fmt.Sprintf("%s %d号充电口", in.Devices[0], in.Slot)
	case ScenarioHydrantPressureLoss:
		en, zh = in.Devices[0], in.Devices[0]
	}
	return fmt.Sprintf("scenario %s started in %s (%s): %s / %s场景开始：%s，%s",
		in.Scenario.Kind, in.Grid, in.Place, en, in.Scenario.Kind.ZH(), in.Place, zh)
}

// Start begins the incident of sc at time now. Devices keep their sequence
// numbers and carry on from their current values. Starting a scenario on a
// device already in one replaces that one.
func (f *Fleet) Start(sc Scenario, now time.Time) (*Incident, error) {
	in := &Incident{Scenario: sc, Start: now}
	ms := now.UnixMilli()
	hold := sc.Hold
	if hold > 0 && hold < MinHold {
		hold = MinHold
	}
	course := func(rise time.Duration) *incident {
		return &incident{start: ms, rise: rise.Milliseconds(), hold: hold.Milliseconds(), fall: recoverFall.Milliseconds()}
	}
	if err := f.Check(sc); err != nil {
		return nil, err
	}
	switch sc.Kind {
	case ScenarioFire:
		grid, _ := f.fireGrid(sc)
		in.Grid = grid
		in.Peak = now.Add(fireRise)
		for i := range f.devs {
			d := &f.devs[i]
			if d.dev.Grid != grid || d.dev.NBIoT != nil { // NB-IoT detectors report through their platform (nbiot.go)
				continue
			}
			switch m := d.m.(type) {
			case *smoke:
				m.alarm = alarmPending
				m.alarmAt = ms + f.gen.millis(time.Second.Milliseconds(), smokeSpread.Milliseconds())
				m.offAt = 0
				if hold > 0 {
					m.offAt = ms + fireRise.Milliseconds() + hold.Milliseconds()
				}
				m.selfTest = false
				in.smoke++
			case *electrical:
				m.fire = course(fireRise)
				for c := range m.peak {
					m.peak[c] = f.gen.uniform(84, 96)
				}
				m.peak[cableChannels-1] -= 4 // the neutral heats less
				in.electrical++
			default:
				continue
			}
			in.Devices = append(in.Devices, d.dev.ID)
			f.markHot(d.dev.Index)
		}
	case ScenarioChargerOverheat:
		d, _ := f.target(sc, devices.KindCharger)
		c := d.m.(*charger)
		c.heat = course(overheatRise)
		c.alt = true
		// The slot that overheats is one that is charging (the first), else slot 1.
		c.hotSlot = 0
		for n := range c.slots {
			if c.slots[n].charging {
				c.hotSlot = uint8(n)
				break
			}
		}
		s := &c.slots[c.hotSlot]
		c.advance(&f.gen, s, ms)
		s.charging = true
		s.until = ms + 6*3600e3
		in.Slot = int(c.hotSlot) + 1
		in.Peak = now.Add(overheatRise)
		in.Grid, in.Devices = d.dev.Grid, []string{d.dev.ID}
		f.markHot(d.dev.Index)
	case ScenarioHydrantPressureLoss:
		d, _ := f.target(sc, devices.KindHydrant)
		d.m.(*hydrant).loss = course(lossRise)
		in.Peak = now.Add(lossRise)
		in.Grid, in.Devices = d.dev.Grid, []string{d.dev.ID}
		f.markHot(d.dev.Index)
	}
	in.Place = f.ledger.PlaceName(in.Grid)
	return in, nil
}

// Check reports whether sc can start in this fleet (its target exists and
// has the right kind) without starting it, so that a typo is reported at
// once rather than when the scenario is due.
func (f *Fleet) Check(sc Scenario) error {
	switch sc.Kind {
	case ScenarioFire:
		grid, err := f.fireGrid(sc)
		if err != nil {
			return err
		}
		for i := range f.devs {
			d := f.devs[i].dev
			if d.Grid == grid && (d.Kind == devices.KindSmoke || d.Kind == devices.KindElectrical) {
				return nil
			}
		}
		return fmt.Errorf("%w %s: village %s has no smoke detector or electrical-fire monitor", ErrScenario, sc, grid)
	case ScenarioChargerOverheat:
		_, err := f.target(sc, devices.KindCharger)
		return err
	case ScenarioHydrantPressureLoss:
		_, err := f.target(sc, devices.KindHydrant)
		return err
	}
	return fmt.Errorf("%w: unknown kind %d", ErrScenario, sc.Kind)
}

// fireGrid resolves the village of a fire: the target is a village code
// or the id of a device in the village.
func (f *Fleet) fireGrid(sc Scenario) (devices.Grid, error) {
	if d, ok := f.ledger.Lookup([]byte(sc.Target)); ok {
		return d.Grid, nil
	}
	g, err := devices.ParseGrid(sc.Target)
	if err != nil {
		return "", fmt.Errorf("%w %s: %q is neither a device of the ledger nor a village code: %v", ErrScenario, sc, sc.Target, err)
	}
	return g, nil
}

// target resolves the device of a single-device scenario.
func (f *Fleet) target(sc Scenario, kind devices.Kind) (*device, error) {
	if sc.Target == "" {
		for i := range f.devs {
			if f.devs[i].dev.Kind == kind {
				return &f.devs[i], nil
			}
		}
		return nil, fmt.Errorf("%w %s: the ledger has no %s device", ErrScenario, sc, kind)
	}
	d, ok := f.ledger.Lookup([]byte(sc.Target))
	if !ok {
		return nil, fmt.Errorf("%w %s: %w %q", ErrScenario, sc, devices.ErrUnknownDevice, sc.Target)
	}
	if d.Kind != kind {
		return nil, fmt.Errorf("%w %s: device %s is of kind %s, not %s", ErrScenario, sc, d.ID, d.Kind, kind)
	}
	return &f.devs[d.Index], nil
}
