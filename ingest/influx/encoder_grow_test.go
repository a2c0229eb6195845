package influx

import (
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// TestEncoderGrow: an encoder grown with the devices a registry change
// added writes what a new encoder of the new snapshot writes.
func TestEncoderGrow(t *testing.T) {
	l, err := devices.LoadLedger("../../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n, _, err := l.Apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{
		{ID: "el-new", Kind: "electrical", Grid: "450204002003"},
		{ID: "sm-new", Kind: "smoke", Grid: "450204002001"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	grown, fresh := NewEncoder(l), NewEncoder(n)
	grown.Grow(n)
	m, _ := devices.MetricByName(devices.KindElectrical, "residual_current_ma")
	for i := range n.Devices {
		a := grown.AppendLine(nil, devices.Index(i), 0, []devices.Metric{m}, []float64{1}, 1000)
		b := fresh.AppendLine(nil, devices.Index(i), 0, []devices.Metric{m}, []float64{1}, 1000)
		if string(a) != string(b) {
			t.Errorf("device %d: grown %q, new %q", i, a, b)
		}
	}
}
