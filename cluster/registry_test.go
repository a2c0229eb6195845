package cluster

import (
	"slices"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// TestSourceFollowsRegistry: a device added through the live registry is
// in its partition (the gateway's for a device behind a gateway), a
// removed one in none, and a partition's devices follow.
func TestSourceFollowsRegistry(t *testing.T) {
	const parts = 8
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lv := devices.NewLive(l)
	s := NewSource(testConfig("nats://127.0.0.1:1", parts, "a"), &msgRecorder{}, l, nil, quiet())
	s.Follow(lv)
	gw := ""
	for id := range l.Gateways {
		gw = id
		break
	}
	if gw == "" {
		t.Fatal("the test ledger has no gateway")
	}
	nl, d, err := lv.Apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{
		{ID: "sm-new", Kind: "smoke", Grid: "450204002003", Address: "鹅山路40号"},
		{ID: "sm-behind", Kind: "smoke", Grid: "450204002003", Address: "鹅山路41号", Gateway: gw},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Added) != 2 {
		t.Fatalf("added %v", d.Added)
	}
	for _, c := range []struct{ id, by string }{{"sm-new", "sm-new"}, {"sm-behind", gw}} {
		dv, ok := nl.LookupID(c.id)
		if !ok {
			t.Fatalf("%s not in the registry", c.id)
		}
		n, ok := s.devs.Load().partitionOf(dv.Index)
		if want := PartitionOf(c.by, parts); !ok || n != want {
			t.Errorf("%s: partition %d, %v; want %d (of %s)", c.id, n, ok, want, c.by)
		}
		if !slices.Contains(s.devs.Load().devicesOf(n), dv.Index) {
			t.Errorf("%s not among partition %d's devices", c.id, n)
		}
	}
	dv, _ := nl.LookupID("sm-new")
	if _, _, err := lv.Apply(&devices.Change{DeleteDevices: []string{"sm-new"}}); err != nil {
		t.Fatal(err)
	}
	if n, ok := s.devs.Load().partitionOf(dv.Index); ok {
		t.Errorf("removed device still in partition %d", n)
	}
	for n := range parts {
		if slices.Contains(s.devs.Load().devicesOf(n), dv.Index) {
			t.Errorf("removed device still among partition %d's devices", n)
		}
	}
	if s.Owns(dv.Index) {
		t.Error("Owns a removed device")
	}
}
