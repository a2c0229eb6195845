package sim_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

// demoLedger generates and loads a ledger of n devices.
func demoLedger(t testing.TB, n int) *devices.Ledger {
	t.Helper()
	var buf bytes.Buffer
	if err := sim.GenerateLedger(&buf, sim.LedgerOptions{Devices: n, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("demo.yaml", buf.Bytes())
	if err != nil {
		var le *devices.LoadError
		if errors.As(err, &le) {
			t.Fatalf("generated ledger has %d problems:\n%v", len(le.Problems), err)
		}
		t.Fatal(err)
	}
	return l
}

func TestGenerateLedger(t *testing.T) {
	for _, n := range []int{1, 3, 4, 20, 300, 1000} {
		var buf bytes.Buffer
		opts := sim.LedgerOptions{Devices: n, Endpoint: "https://dispatch.example.org/hook/", Seed: 7}
		if err := sim.GenerateLedger(&buf, opts); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		l, err := devices.ParseLedger("gen.yaml", buf.Bytes())
		if err != nil {
			t.Fatalf("n=%d: ParseLedger: %v", n, err)
		}
		if len(l.Devices) != n {
			t.Fatalf("n=%d: ledger has %d devices", n, len(l.Devices))
		}
		kinds := map[devices.Kind]int{}
		counties := map[string]bool{}
		for _, d := range l.Devices {
			kinds[d.Kind]++
			counties[d.Grid.County()] = true
			prefix := map[devices.Kind]string{devices.KindElectrical: "el-", devices.KindSmoke: "sm-", devices.KindHydrant: "hy-", devices.KindCharger: "ch-"}[d.Kind]
			if !strings.HasPrefix(d.ID, prefix+d.Grid.County()+"-") {
				t.Errorf("device %s (%s in %s): id does not follow %s<county>-NNNN", d.ID, d.Kind, d.Grid, prefix)
			}
			if d.Station == nil || !d.Grid.Within(d.Station.Grids[0]) {
				t.Errorf("device %s: station %v does not cover grid %s", d.ID, d.Station, d.Grid)
			}
			if d.Address == "" || d.Unit == "" || d.Model == "" {
				t.Errorf("device %s: address, unit or model missing: %+v", d.ID, d)
			}
			if name := l.PlaceName(d.Grid); name == string(d.Grid) || !strings.HasPrefix(d.Address, name) {
				t.Errorf("device %s: address %q does not start with the place name %q", d.ID, d.Address, name)
			}
		}
		if n >= 4 && len(kinds) != 4 {
			t.Errorf("n=%d: kinds %v, want all four", n, kinds)
		}
		if n >= 300 {
			for _, c := range []string{"450204", "330326", "500230", "310107"} {
				if !counties[c] {
					t.Errorf("n=%d: no device in county %s", n, c)
				}
			}
		}
		for _, s := range l.Stations {
			if want := "https://dispatch.example.org/hook/dispatch/" + s.ID; s.Endpoint != want {
				t.Errorf("station %s: endpoint %q, want %q", s.ID, s.Endpoint, want)
			}
			if len(s.Grids) != 1 || len(s.Grids[0]) != 9 {
				t.Errorf("station %s: grids %v, want one town prefix", s.ID, s.Grids)
			}
		}
	}
}

func TestGenerateLedgerDefaultsAndSeed(t *testing.T) {
	var a, b, c bytes.Buffer
	if err := sim.GenerateLedger(&a, sim.LedgerOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := sim.GenerateLedger(&b, sim.LedgerOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := sim.GenerateLedger(&c, sim.LedgerOptions{Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("same seed, different ledgers")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("different seeds, same ledger")
	}
	l, err := devices.ParseLedger("a.yaml", a.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Devices) != sim.DefaultLedgerDevices {
		t.Errorf("default ledger has %d devices, want %d", len(l.Devices), sim.DefaultLedgerDevices)
	}
	if got := l.Stations[0].Endpoint; !strings.HasPrefix(got, sim.DefaultEndpoint+"/dispatch/") {
		t.Errorf("default endpoint %q", got)
	}
}

func TestGenerateLedgerErrors(t *testing.T) {
	for _, opts := range []sim.LedgerOptions{{Devices: -1}, {Endpoint: "127.0.0.1:8090"}} {
		if err := sim.GenerateLedger(&bytes.Buffer{}, opts); err == nil {
			t.Errorf("%+v: no error", opts)
		}
	}
}
