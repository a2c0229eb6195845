package devices

import (
	"errors"
	"strings"
	"testing"
	"unsafe"
)

func TestLoadLedger(t *testing.T) {
	l, err := LoadLedger("testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Devices) != 4 || len(l.Stations) != 1 {
		t.Fatalf("got %d devices, %d stations; want 4, 1", len(l.Devices), len(l.Stations))
	}
	d, ok := l.Lookup([]byte("hy-1"))
	if !ok || d.Kind != KindHydrant || d.Index != 2 {
		t.Fatalf("Lookup(hy-1) = %+v, %v", d, ok)
	}
	if d.Station == nil || d.Station.ID != "st-tanxi" {
		t.Fatalf("hy-1 covered by %v, want st-tanxi from its grid", d.Station)
	}
	if d.Grid.County() != "450204" || d.Grid.Town() != "450204002" {
		t.Fatalf("grid parts %s %s", d.Grid.County(), d.Grid.Town())
	}
	if got := l.PlaceName(d.Grid); got != "柳州市柳南区潭西街道鹅山村" {
		t.Fatalf("PlaceName = %q", got)
	}
	if _, ok := l.Lookup([]byte("nope")); ok {
		t.Fatal("Lookup of an unknown id succeeded")
	}
	// Devices of one gateway share the ledger's copy of its id.
	gw := l.GatewayID(string([]byte("gw-1")))
	for _, id := range []string{"el-1", "hy-1"} {
		d, _ := l.LookupID(id)
		if d.Gateway != gw || unsafe.StringData(d.Gateway) != unsafe.StringData(gw) {
			t.Errorf("%s gateway %q is not the ledger's copy of %q", id, d.Gateway, gw)
		}
	}
	if got := l.GatewayID("gw-9"); got != "gw-9" {
		t.Errorf("GatewayID(gw-9) = %q", got)
	}
}

func TestLedgerProblems(t *testing.T) {
	const head = `stations:
  - id: st-a
    name: A
    grids: ["450204002"]
    endpoint: http://x/y
devices:
`
	tests := []struct {
		name, devices, want string
	}{
		{"short grid", "  - {id: d1, kind: smoke, grid: \"4502\"}\n", `ledger.yaml:7: device "d1": grid "4502" is not a 12-digit`},
		{"bad province", "  - {id: d1, kind: smoke, grid: \"990204002003\"}\n", `"99" is not a province code`},
		{"town code", "  - {id: d1, kind: smoke, grid: \"450204002000\"}\n", `names a town`},
		{"letters", "  - {id: d1, kind: smoke, grid: \"45020400200x\"}\n", `non-digit at position 12`},
		{"kind", "  - {id: d1, kind: toaster, grid: \"450204002003\"}\n", `unknown device kind "toaster"`},
		{"unknown station", "  - {id: d1, kind: smoke, grid: \"450204002003\", station: st-b}\n", `unknown station "st-b"`},
		{"uncovered", "  - {id: d1, kind: smoke, grid: \"330326002003\"}\n", `no micro fire station covers grid 330326002003`},
		{"duplicate", "  - {id: d1, kind: smoke, grid: \"450204002003\"}\n  - {id: d1, kind: smoke, grid: \"450204002003\"}\n", `ledger.yaml:8: device "d1": duplicate id`},
		{"topic char", "  - {id: \"d/1\", kind: smoke, grid: \"450204002003\"}\n", `id "d/1" has '/'`},
		{"misspelt key", "  - {id: d1, kind: smoke, grid: \"450204002003\", adress: x}\n", `field adress not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLedger("ledger.yaml", []byte(head+tt.devices))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LoadError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLedgerReportsEveryProblem(t *testing.T) {
	_, err := ParseLedger("l.yaml", []byte(`stations:
  - {id: st-a, name: A, grids: ["45"], endpoint: "ftp://x"}
devices:
  - {id: d1, kind: smoke, grid: "1"}
  - {id: d2, kind: fog, grid: "450204002003"}
`))
	var le *LoadError
	if !errors.As(err, &le) || len(le.Problems) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	for i, line := range []int{2, 4, 5} {
		if le.Problems[i].Line != line {
			t.Errorf("problem %d at line %d, want %d: %s", i, le.Problems[i].Line, line, le.Problems[i])
		}
	}
}

func TestLookupMetricDoesNotAllocate(t *testing.T) {
	name := []byte("slot_temp_c")
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := LookupMetric(KindCharger, name); !ok {
			t.Fatal("slot_temp_c not found")
		}
	})
	if allocs != 0 {
		t.Fatalf("LookupMetric allocates %v times", allocs)
	}
	if _, ok := LookupMetric(KindSmoke, name); ok {
		t.Fatal("slot_temp_c found for a smoke detector")
	}
}
