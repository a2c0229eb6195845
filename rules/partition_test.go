package rules

import (
	"bytes"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// A partition's checkpoint holds its devices only, by id; restoring it
// into another engine gives those devices their state and leaves every
// other device's alone (another partition this instance owns).
func TestRestoreDevicesTouchesOnlyThem(t *testing.T) {
	const yaml = `rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 10s, severity: alarm}
  - {id: tilt, kind: hydrant, event: tilt, severity: alarm}
`
	el, hy := "el-1", "hy-1"
	t0 := int64(1_795_000_000_000)
	feed := func(e *Engine, l *devices.Ledger, id, metric string, sec int64, seq uint32, v float64) []Event {
		d, _ := l.LookupID(id)
		m, _ := devices.MetricByName(d.Kind, metric)
		r := devices.Reading{Device: d.Index, Kind: d.Kind, Metric: m, Value: v, Time: t0 + sec*1000, Seq: seq}
		return e.Eval(r, e.Admit(d.Index, r.Time, seq, true), nil)
	}
	a, la := mustEngine(t, yaml)
	feed(a, la, el, "residual_current_ma", 0, 1, 350) // pending since 0
	d, _ := la.LookupID(el)
	var buf bytes.Buffer
	if _, err := a.SnapshotDevices(nil, la, []devices.Index{d.Index}).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}

	b, lb := mustEngine(t, yaml)
	feed(b, lb, hy, "tilt", 5, 1, 1) // hy-1 tilted on b: another partition's device
	db, _ := lb.LookupID(el)
	n, err := b.RestoreDevices(bytes.NewReader(buf.Bytes()), lb, []devices.Index{db.Index})
	if err != nil || n != 1 {
		t.Fatalf("restored %d: %v", n, err)
	}
	if evs := feed(b, lb, el, "residual_current_ma", 10, 2, 350); len(evs) != 1 || evs[0].Transition != Raise || evs[0].Since != t0 {
		t.Errorf("el-1 after the restore: %+v, want the raise of the for that began at t0", evs)
	}
	if evs := feed(b, lb, hy, "tilt", 6, 2, 1); len(evs) != 0 {
		t.Errorf("hy-1, not restored, lost its state: %+v", evs)
	}
	if evs := feed(b, lb, hy, "tilt", 7, 3, 0); len(evs) != 1 || evs[0].Transition != Clear {
		t.Errorf("hy-1's tilt does not end: %+v", evs)
	}
}
