package devices

import (
	"errors"
	"math"
	"os"
	"reflect"
	"testing"
)

// FuzzEntriesRoundTrip: what ParseEntries reads, MarshalEntries writes
// back to text that ParseEntries reads as the same entries, and Build
// judges both alike. Seeds: the test ledgers and testdata/fuzz.
func FuzzEntriesRoundTrip(f *testing.F) {
	b, err := os.ReadFile("testdata/ledger.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(registryLedger))
	f.Add([]byte(uitdLedger))
	f.Add([]byte("devices:\n  - {id: d1, kind: smoke, grid: \"450204002003\", rules: {smoke.x: {off: true}}, lat: .nan}\n"))
	f.Add([]byte("places: {\"45\": \"\"}\ngateways: [{id: \"g\\u00e9\"}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEntries("fuzz.yaml", b)
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		y, err := MarshalEntries(e)
		if err != nil {
			t.Fatalf("MarshalEntries of what ParseEntries read: %v", err)
		}
		e2, err := ParseEntries("again.yaml", y)
		if err != nil {
			t.Fatalf("ParseEntries of MarshalEntries: %v\n%s", err, y)
		}
		clearLines(e)
		clearLines(e2)
		for _, x := range []*Entries{e, e2} {
			for i := range x.Devices {
				d := &x.Devices[i]
				if math.IsNaN(d.Lat) {
					d.Lat = 1000 // NaN ≠ NaN; both out of range
				}
				if math.IsNaN(d.Lon) {
					d.Lon = 1000
				}
				if d.Rules != "" { // compare overrides by what they say, not their layout
					r, err := parseRules(d.Rules)
					if err != nil {
						t.Fatalf("rules %q: %v", d.Rules, err)
					}
					d.Rules, _ = rulesText(r)
				}
			}
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip differs:\n%+v\n%+v\n%s", e, e2, y)
		}
		_, err1 := Build("a", e)
		_, err2 := Build("a", e2)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("Build judges the copies differently: %v / %v", err1, err2)
		}
	})
}
