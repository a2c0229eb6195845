package influx

import (
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// Devices of one kind in one village share their tags (issue 18); each line
// still names its own device, and a device without an id or a grid (a
// ledger built by hand, as benchmarks do) gets no empty tag.
func TestEncoderSharedPlaces(t *testing.T) {
	l := &devices.Ledger{Devices: []devices.Device{
		{Index: 0, ID: "sm-1", Kind: devices.KindSmoke, Grid: "450204002003"},
		{Index: 1, ID: "sm-2", Kind: devices.KindSmoke, Grid: "450204002003"},
		{Index: 2, ID: "el-1", Kind: devices.KindElectrical, Grid: "450204002003"},
		{Index: 3, Kind: devices.KindHydrant},
		{Index: 4, ID: "a=b", Kind: devices.KindSmoke, Grid: "450204002004"},
	}}
	e := NewEncoder(l)
	if len(e.places) != 4 {
		t.Errorf("%d tag sets for 5 devices in 4 (kind, village) pairs", len(e.places))
	}
	smoke := metric(t, devices.KindSmoke, "smoke_alarm")
	temp := metric(t, devices.KindElectrical, "cable_temp_c")
	pressure := metric(t, devices.KindHydrant, "pressure_mpa")
	for _, c := range []struct {
		d    devices.Index
		ch   uint8
		m    devices.Metric
		want string
	}{
		{0, 0, smoke, "smoke,county=450204,device=sm-1,kind=smoke,town=450204002,village=450204002003 smoke_alarm=1 5\n"},
		{1, 0, smoke, "smoke,county=450204,device=sm-2,kind=smoke,town=450204002,village=450204002003 smoke_alarm=1 5\n"},
		{2, 2, temp, "electrical,ch=2,county=450204,device=el-1,kind=electrical,town=450204002,village=450204002003 cable_temp_c=1 5\n"},
		{3, 0, pressure, "hydrant,kind=hydrant pressure_mpa=1 5\n"},
		{3, 1, pressure, "hydrant,ch=1,kind=hydrant pressure_mpa=1 5\n"},
		{4, 0, smoke, "smoke,county=450204,device=a\\=b,kind=smoke,town=450204002,village=450204002004 smoke_alarm=1 5\n"},
	} {
		if got := string(e.AppendLine(nil, c.d, c.ch, []devices.Metric{c.m}, []float64{1}, 5)); got != c.want {
			t.Errorf("device %d:\n got %q\nwant %q", c.d, got, c.want)
		}
	}
	a := string(e.AppendAlarm(nil, AlarmPoint{Device: 3, Rule: "r", Severity: "fault", State: "raised", Value: 1, Threshold: 2, Time: 5}))
	if want := "alarms,kind=hydrant,rule=r,severity=fault,state=raised alarm_id=\"\",value=1,threshold=2,message=\"\" 5\n"; a != want {
		t.Errorf("alarm:\n got %q\nwant %q", a, want)
	}
}
