package rules

import (
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// TestForget: a device whose alarm is firing raises nothing for a reading
// still over the threshold; once forgotten it is a new device: the same
// reading starts a fresh for, and the alarm is raised again for later.
// Another device keeps its state.
func TestForget(t *testing.T) {
	e, l := mustEngine(t, `rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 10s, severity: alarm}
`)
	el1, _ := l.Lookup([]byte("el-1"))
	m, _ := devices.MetricByName(el1.Kind, "residual_current_ma")
	var others []*devices.Device
	for i := range l.Devices {
		if d := &l.Devices[i]; d.Kind == el1.Kind && d.Index != el1.Index {
			others = append(others, d)
		}
	}
	at := func(d *devices.Device, sec int64, v float64) []Event {
		return evalOne(e, devices.Reading{Device: d.Index, Kind: d.Kind, Metric: m, Value: v, Time: 1_700_000_000_000 + sec*1000})
	}
	devs := append([]*devices.Device{el1}, others...)
	for _, d := range devs {
		at(d, 0, 350)
		if evs := at(d, 10, 350); len(evs) != 1 || evs[0].Transition != Raise {
			t.Fatalf("%s: %v, want a raise after for", d.ID, evs)
		}
	}
	e.Forget([]devices.Index{el1.Index})
	if evs := at(el1, 11, 350); len(evs) != 0 {
		t.Fatalf("forgotten device: %v, want a fresh for (nothing yet)", evs)
	}
	if evs := at(el1, 21, 350); len(evs) != 1 || evs[0].Transition != Raise {
		t.Fatalf("forgotten device after for: %v, want a raise", evs)
	}
	for _, d := range others {
		if evs := at(d, 11, 100); len(evs) != 1 || evs[0].Transition != Clear {
			t.Errorf("%s (not forgotten): %v, want its alarm cleared", d.ID, evs)
		}
	}
}
