package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

// The UITD bench's ledger (the fleet's with n UITDs appended) loads, and its addresses are the ones the
// bench's UITDs send from.
func TestUITDBenchLedger(t *testing.T) {
	dir := t.TempDir()
	b := &bench{dir: dir, ledger: filepath.Join(dir, "ledger.yaml")}
	f, err := os.Create(b.ledger)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.GenerateLedger(f, sim.LedgerOptions{Devices: 50, Endpoint: "http://127.0.0.1:1", Seed: 1}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b.ledgerL, err = devices.LoadLedger(b.ledger); err != nil {
		t.Fatal(err)
	}
	path, err := b.uitdLedger(300)
	if err != nil {
		t.Fatal(err)
	}
	l, err := devices.LoadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := l.UITD(uitdAddr(299))
	if len(l.UITDs()) != 300 || !ok || l.Device(u.Device).ID != "uitd-bench-299" || uitdAddr(299).String() != "00000000012c" {
		t.Errorf("%d UITDs, 299: %v %s", len(l.UITDs()), ok, uitdAddr(299))
	}
}
