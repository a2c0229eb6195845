package main

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// TestBuildingLedger: the demo ledger with the building appended loads, with its UITD and both points.
func TestBuildingLedger(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "ledger.yaml"), filepath.Join(dir, "all.yaml")
	if err := cmdLedger([]string{"-devices", "20", "-o", in}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := writeBuildingLedger(in, out, io.Discard); err != nil {
		t.Fatal(err)
	}
	l, err := devices.LoadLedger(out)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := l.UITD([6]byte{1, 2, 3, 4, 5, 6})
	if !ok || len(l.Devices) != 22 || len(u.Points) != 1 {
		t.Fatalf("%d devices, UITD %+v", len(l.Devices), u)
	}
	if d := l.Device(u.Device); d.Station == nil {
		t.Errorf("the building's UITD has no covering station")
	}
}
