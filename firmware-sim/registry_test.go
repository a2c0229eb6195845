package sim

import (
	"bytes"
	"encoding/csv"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// A generated registry is one firewatch accepts, as data and as YAML, and
// its CSV has a row per device under the template's headers.
func TestGenerateRegistry(t *testing.T) {
	e, err := GenerateRegistry(RegistryOptions{Devices: 5000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	l, err := devices.Build("gen", e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.NBIoTIndex(); err != nil {
		t.Fatal(err)
	}
	var kinds [devices.NumKinds]int
	gw, nb := 0, 0
	for i := range l.Devices {
		d := &l.Devices[i]
		kinds[d.Kind]++
		if d.Gateway != "" {
			gw++
		}
		if d.NBIoT != nil {
			nb++
		}
		if d.Gateway == "" && d.NBIoT == nil && d.SecretHash == "" {
			t.Fatalf("%s cannot connect", d.ID)
		}
	}
	near := func(got, want int) bool { return got > want*9/10 && got < want*11/10 }
	if len(l.Devices) != 5000 || !near(kinds[devices.KindElectrical], 1500) || !near(kinds[devices.KindSmoke], 2000) ||
		!near(kinds[devices.KindHydrant], 500) || !near(kinds[devices.KindCharger], 1000) || !near(gw, 2500) || !near(nb, 1200) {
		t.Errorf("%d devices, kinds %v, %d behind gateways, %d NB-IoT", len(l.Devices), kinds, gw, nb)
	}
	var y bytes.Buffer
	if err := WriteRegistryYAML(&y, e, "test"); err != nil {
		t.Fatal(err)
	}
	l2, err := devices.ParseLedger("gen.yaml", y.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	a, b := l.Entries(), l2.Entries()
	for i := range b.Devices {
		a.Devices[i].Line, b.Devices[i].Line = 0, 0
		if a.Devices[i] != b.Devices[i] {
			t.Fatalf("device %d differs through YAML:\n%+v\n%+v", i, a.Devices[i], b.Devices[i])
		}
	}
	var c bytes.Buffer
	if err := WriteRegistryCSV(&c, e); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&c).ReadAll()
	if err != nil || len(rows) != 5001 || rows[0][0] != "设备编号" || rows[1][0] != e.Devices[0].ID {
		t.Fatalf("CSV: %d rows, %v", len(rows), err)
	}
}
