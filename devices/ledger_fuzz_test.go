package devices

import (
	"os"
	"testing"
)

// FuzzParseLedger feeds arbitrary bytes to the ledger loader: it must
// report problems, never panic, and what it accepts must be consistent.
// Seeds: testdata/ledger.yaml here and testdata/fuzz/FuzzParseLedger.
func FuzzParseLedger(f *testing.F) {
	b, err := os.ReadFile("testdata/ledger.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("devices:\n  - {id: d1, kind: smoke, grid: \"450204002003\", heartbeat: 1h}\nstations:\n  - {id: s, name: S, grids: [\"450204\"], endpoint: \"http://x/y\"}\n"))
	f.Add([]byte("gateways:\n  - {id: g, secret_hash: x}\n  - {id: g}\n"))
	f.Add([]byte("places: {\"99\": x}\ndevices: [{id: \"a/b\"}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLedger("fuzz.yaml", b)
		if err != nil {
			if _, ok := err.(*LoadError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for i := range l.Devices {
			d := &l.Devices[i]
			if d.Index != Index(i) || CheckID(d.ID) != nil || d.Kind == KindInvalid || d.Kind >= NumKinds || d.Station == nil || d.Heartbeat < 0 {
				t.Fatalf("accepted a bad device %+v", *d)
			}
			if got, ok := l.LookupID(d.ID); !ok || got != d {
				t.Fatalf("Lookup(%q) inconsistent", d.ID)
			}
		}
		for id, g := range l.Gateways {
			if g.ID != id || CheckID(id) != nil {
				t.Fatalf("accepted a bad gateway %+v", *g)
			}
		}
	})
}
