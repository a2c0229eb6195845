package bridge

import (
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// TestVitals: the last signal and battery of each bound detector, each
// kept when a report says nothing of it; unbound devices have none.
func TestVitals(t *testing.T) {
	l := ledger(t, testLedger)
	v := NewVitals(l)
	sm, _ := l.LookupID("sm-gb")
	bat, _ := devices.MetricByName(devices.KindSmoke, "battery_pct")
	rssi, _ := devices.MetricByName(devices.KindSmoke, "rssi_dbm")
	if _, sok, _, bok := v.Get("sm-gb"); sok || bok {
		t.Fatal("vitals before any report")
	}
	v.note(sm, &nbiot.Report{Signal: -99, SignalSet: true, Values: []nbiot.Value{{Metric: bat, Value: 76}}})
	if s, sok, b, bok := v.Get("sm-gb"); s != -99 || !sok || b != 76 || !bok {
		t.Errorf("after a status: %d %v %d %v", s, sok, b, bok)
	}
	v.note(sm, &nbiot.Report{Values: []nbiot.Value{{Metric: bat, Value: 74.6}}})
	if s, sok, b, bok := v.Get("sm-gb"); s != -99 || !sok || b != 75 || !bok {
		t.Errorf("battery alone: %d %v %d %v", s, sok, b, bok)
	}
	v.note(sm, &nbiot.Report{Values: []nbiot.Value{{Metric: rssi, Value: -101}}})
	if s, _, b, _ := v.Get("sm-gb"); s != -101 || b != 75 {
		t.Errorf("signal from a codec's rssi_dbm: %d %d", s, b)
	}
	plain, _ := l.LookupID("el-plain")
	v.note(plain, &nbiot.Report{Signal: 5, SignalSet: true})
	if _, sok, _, _ := v.Get("el-plain"); sok {
		t.Error("vitals of an unbound device")
	}
}
