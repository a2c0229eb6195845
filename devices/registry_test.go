package devices

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// registryLedger has a device of each sort the registry knows: a gateway's,
// one with overrides and a heartbeat, an NB-IoT one, one naming its station,
// UITD points.
const registryLedger = `
places:
  "450204": 柳州市柳南区
  "450204002": 潭西街道
stations:
  - {id: st-1, name: 一站, grids: ["450204"], endpoint: "http://127.0.0.1:1/a", lat: 24.3, lon: 109.4}
  - {id: st-2, name: 二站, grids: ["450204003", "450205"], endpoint: "https://127.0.0.1:1/b"}
gateways:
  - {id: gw-1, secret_hash: "h1"}
  - {id: gw-2}
devices:
  - {id: el-1, kind: electrical, model: ARCM300, grid: "450204002003", address: 鹅山路12号, lat: 24.3, lon: 109.4, unit: 纺织厂, phone: "13800000000", gateway: gw-1, channels: 2}
  - id: el-2
    kind: electrical
    grid: "450204003001"
    gateway: gw-1
    rules:
      electrical.residual_current:
        above: 500
      electrical.cable_temp: {off: true}
  - {id: sm-1, kind: smoke, grid: "450205001001", heartbeat: 24h, secret_hash: "h2", nbiot: {imei: "869975031234567", product: p1, mobile: "13900000000"}}
  - {id: ch-1, kind: charger, grid: "450204002003", station: st-2}
  - {id: uitd-1, kind: facility, grid: "450204002003", address: 柳石家园 消防控制室}
  - {id: fa-1, kind: facility, grid: "450204002003", address: 3号楼}
uitds:
  - address: "010203040506"
    device: uitd-1
    patrol: 30m
    networks: ["10.8.0.0/16"]
    points:
      - {system: 1, system_addr: 1, type: 42, addr: 0x105, device: fa-1}
`

func mustLedger(t testing.TB, text string) *Ledger {
	t.Helper()
	l, err := ParseLedger("r.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// problems returns err's problems, failing the test when it is not a *LoadError.
func problems(t *testing.T, err error) []Problem {
	t.Helper()
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want a *LoadError", err)
	}
	return le.Problems
}

type locator struct {
	Section string
	Index   int
	ID      string
	Field   string
}

func locators(ps []Problem) []locator {
	var out []locator
	for _, p := range ps {
		out = append(out, locator{p.Section, p.Index, p.ID, p.Field})
	}
	return out
}

func TestBuildLocatesEveryProblem(t *testing.T) {
	e := &Entries{
		Places:   map[string]string{"450204": "柳南区", "4502x": "bad"},
		Gateways: []GatewayEntry{{ID: "gw-1"}, {ID: "gw 2"}, {ID: "gw-1"}},
		Stations: []StationEntry{
			{ID: "st-1", Name: "一站", Grids: []string{"450204"}, Endpoint: "http://x/y"},
			{ID: "st-2", Grids: []string{"450205"}, Endpoint: "ftp://x"},
		},
		Devices: []DeviceEntry{
			{ID: "d1", Kind: "smoke", Grid: "450204002003"},
			{ID: "d2", Kind: "fog", Grid: "450204002003"},
			{ID: "d3", Kind: "smoke", Grid: "4502"},
			{ID: "d4", Kind: "smoke", Grid: "450204002003", Station: "st-9"},
			{ID: "d1", Kind: "smoke", Grid: "450204002003"},
			{ID: "d5", Kind: "smoke", Grid: "330326002003"},
			{ID: "d6", Kind: "smoke", Grid: "450204002003", Channels: 13},
			{ID: "d7", Kind: "smoke", Grid: "450204002003", Rules: "[1, 2]"},
			{ID: "d8", Kind: "smoke", Grid: "450204002003", Lat: 91},
			{ID: "d9", Kind: "smoke", Grid: "450204002003", NBIoT: NBIoT{IMEI: "12"}},
		},
		UITDs: []UITDEntry{{Address: "0102030405", Device: "d1"}},
	}
	_, err := Build("registry", e)
	got := locators(problems(t, err))
	want := []locator{
		{"gateways", 1, "gw 2", "id"},
		{"gateways", 2, "gw-1", "id"},
		{"places", -1, "4502x", ""},
		{"stations", 1, "st-2", "name"},
		{"stations", 1, "st-2", "endpoint"},
		{"devices", 1, "d2", "kind"},
		{"devices", 2, "d3", "grid"},
		{"devices", 3, "d4", "station"},
		{"devices", 4, "d1", "id"},
		{"devices", 5, "d5", "grid"},
		{"devices", 6, "d6", "channels"},
		{"devices", 7, "d7", "rules"},
		{"devices", 8, "d8", "lat"},
		{"devices", 9, "d9", "nbiot"},
		{"uitds", 0, "0102030405", "address"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems located at\n%v\nwant\n%v\n%v", got, want, err)
	}
	for _, p := range problems(t, err) {
		if p.File != "registry" || p.Reason == "" {
			t.Errorf("problem %+v lacks its file or reason", p)
		}
	}
}

// Problems of a file keep their lines and order (ParseLedger is Build of
// ParseEntries), and carry the locator too.
func TestParseLedgerProblemsLocated(t *testing.T) {
	_, err := ParseLedger("l.yaml", []byte(`stations:
  - {id: st-a, name: A, grids: ["45"], endpoint: "ftp://x"}
devices:
  - {id: d1, kind: smoke, grid: "1"}
  - {id: d2, kind: fog, grid: "450204002003", adress: x}
  - {id: d3, kind: fog, grid: "450204002003"}
`))
	ps := problems(t, err)
	var lines []int
	for _, p := range ps {
		lines = append(lines, p.Line)
	}
	if !slices.Equal(lines, []int{2, 4, 5, 6}) {
		t.Fatalf("lines %v, want 2 4 5 6: %v", lines, err)
	}
	if got := locators(ps)[2]; got != (locator{"devices", 1, "d2", ""}) || !strings.Contains(ps[2].Reason, "field adress not found") {
		t.Errorf("unknown key reported as %+v", ps[2])
	}
	if got := locators(ps)[3]; got != (locator{"devices", 2, "d3", "kind"}) {
		t.Errorf("kind reported as %+v", got)
	}
}

func TestApplyKeepsIndicesAndLeavesTombstones(t *testing.T) {
	l := mustLedger(t, registryLedger)
	el1, _ := l.LookupID("el-1")
	sm1, _ := l.LookupID("sm-1")
	n, d, err := l.Apply(&Change{
		UpsertDevices: []DeviceEntry{
			{ID: "sm-1", Kind: "smoke", Grid: "450205001001", Heartbeat: 24 * time.Hour, SecretHash: "h2",
				NBIoT: NBIoT{IMEI: "869975031234567", Product: "p1", Mobile: "13900000000"}, Address: "新地址"},
			{ID: "new-1", Kind: "hydrant", Grid: "450204002004", Gateway: "gw-2"},
		},
		DeleteDevices: []string{"el-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.Version() != l.Version()+1 || l.Version() != 1 {
		t.Errorf("versions %d → %d", l.Version(), n.Version())
	}
	if n.Len() != l.Len()+1 || len(n.Devices) != n.Len() {
		t.Fatalf("Len %d → %d, want one more slot", l.Len(), n.Len())
	}
	if _, ok := n.LookupID("el-1"); ok {
		t.Error("the removed device is still found")
	}
	if _, ok := n.Lookup([]byte("el-1")); ok {
		t.Error("the removed device is still found by Lookup")
	}
	if ts := n.Device(el1.Index); !ts.Removed || ts.ID != "el-1" {
		t.Errorf("tombstone %+v", ts)
	}
	s, ok := n.LookupID("sm-1")
	if !ok || s.Index != sm1.Index || s.Address != "新地址" {
		t.Errorf("edited sm-1 = %+v, want index %d", s, sm1.Index)
	}
	nw, ok := n.LookupID("new-1")
	if !ok || nw.Index != Index(l.Len()) || nw.Station == nil || nw.Station.ID != "st-1" || nw.Gateway != n.GatewayID("gw-2") {
		t.Errorf("added device %+v", nw)
	}
	want := &Diff{Added: []Index{Index(l.Len())}, Removed: []Index{el1.Index}, Edited: []Index{sm1.Index}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("diff %+v, want %+v", d, want)
	}
	// The old snapshot is untouched.
	if o, ok := l.LookupID("el-1"); !ok || o.Removed {
		t.Error("the old snapshot lost el-1")
	}
	if o, _ := l.LookupID("sm-1"); o.Address != "" {
		t.Errorf("the old snapshot's sm-1 changed: %q", o.Address)
	}
	if _, ok := l.LookupID("new-1"); ok || l.Len() != 6 {
		t.Error("the old snapshot sees the added device")
	}
	// A removed id added again takes a new slot.
	n2, d2, err := n.Apply(&Change{UpsertDevices: []DeviceEntry{{ID: "el-1", Kind: "smoke", Grid: "450204002003"}}})
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := n2.LookupID("el-1"); !ok || e.Index != Index(n.Len()) || !slices.Equal(d2.Added, []Index{e.Index}) {
		t.Errorf("el-1 added again: %+v %+v", e, d2)
	}
	if _, ok := n.LookupID("el-1"); ok {
		t.Error("adding el-1 again changed the previous snapshot's index")
	}
}

func TestApplyNoChangeIsEmpty(t *testing.T) {
	l := mustLedger(t, registryLedger)
	e := l.Entries()
	n, d, err := l.Apply(&Change{UpsertDevices: e.Devices, UpsertStations: e.Stations, UpsertGateways: e.Gateways})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Empty() {
		t.Errorf("upserting every entry unchanged gives diff %+v", d)
	}
	if u, _ := n.LookupID("uitd-1"); u.Heartbeat != 15*time.Minute {
		t.Errorf("uitd-1 heartbeat %v, want its patrol's 15m", u.Heartbeat)
	}
}

func TestDiffReset(t *testing.T) {
	l := mustLedger(t, registryLedger)
	base := l.Entries().Devices[0] // el-1
	edit := func(f func(e *DeviceEntry)) DeviceEntry { e := base; f(&e); return e }
	for _, c := range []struct {
		name  string
		e     DeviceEntry
		reset bool
	}{
		{"kind", edit(func(e *DeviceEntry) { e.Kind = "smoke"; e.Channels = 0 }), true},
		{"channels", edit(func(e *DeviceEntry) { e.Channels = 3 }), true},
		{"rules", edit(func(e *DeviceEntry) { e.Rules = "electrical.residual_current: {above: 400}\n" }), true},
		{"model", edit(func(e *DeviceEntry) { e.Model = "ARCM310" }), true},
		{"phone", edit(func(e *DeviceEntry) { e.Phone = "13800000001" }), false},
		{"station", edit(func(e *DeviceEntry) { e.Station = "st-2" }), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, d, err := l.Apply(&Change{UpsertDevices: []DeviceEntry{c.e}})
			if err != nil {
				t.Fatal(err)
			}
			i, _ := n.LookupID("el-1")
			if !slices.Equal(d.Edited, []Index{i.Index}) || len(d.Added)+len(d.Removed) != 0 {
				t.Fatalf("diff %+v", d)
			}
			if got := len(d.Reset) == 1; got != c.reset {
				t.Errorf("reset %v, want %v", got, c.reset)
			}
		})
	}
	// The overrides of a file and the same overrides as text are the same.
	_, d, err := l.Apply(&Change{UpsertDevices: []DeviceEntry{l.Entries().Devices[1]}})
	if err != nil || !d.Empty() {
		t.Errorf("el-2 upserted as it is: %+v %v", d, err)
	}
}

func TestApplyProblemsChangeNothing(t *testing.T) {
	l := mustLedger(t, registryLedger)
	before := l.Entries()
	_, _, err := l.Apply(&Change{
		Places:         map[string]string{"99": "x"},
		UpsertDevices:  []DeviceEntry{{ID: "ok-1", Kind: "smoke", Grid: "450204002003"}, {ID: "bad-1", Kind: "smoke", Grid: "450204002000"}, {ID: "ok-1", Kind: "smoke", Grid: "450204002003"}},
		DeleteDevices:  []string{"nope", "fa-1"},
		DeleteStations: []string{"st-2"},
		DeleteGateways: []string{"gw-9"},
	})
	got := locators(problems(t, err))
	want := []locator{
		{"places", -1, "99", ""},
		{"gateways", -1, "gw-9", "id"},
		{"devices", -1, "nope", "id"},
		{"devices", 1, "bad-1", "grid"},
		{"devices", 2, "ok-1", "id"},
		{"devices", -1, "sm-1", "grid"},    // 450205 was st-2's only
		{"devices", -1, "ch-1", "station"}, // names st-2
		{"uitds", 0, "010203040506", "points"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems\n%v\nwant\n%v\n%v", got, want, err)
	}
	if !reflect.DeepEqual(l.Entries(), before) {
		t.Error("a refused change modified the ledger")
	}
}

func TestApplyStations(t *testing.T) {
	l := mustLedger(t, registryLedger)
	el1, _ := l.LookupID("el-1")
	ch1, _ := l.LookupID("ch-1")
	n, d, err := l.Apply(&Change{UpsertStations: []StationEntry{
		{ID: "st-2", Name: "二站", Grids: []string{"450204003", "450205"}, Endpoint: "https://127.0.0.1:2/new"},
		{ID: "st-3", Name: "三站", Grids: []string{"450204002"}, Endpoint: "http://127.0.0.1:3/c"},
	}, UpsertGateways: []GatewayEntry{{ID: "gw-2", SecretHash: "h9"}}, DeleteGateways: []string{"gw-1"},
		Places: map[string]string{"450204002": "", "450204003": "三街道"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Stations, []string{"st-2", "st-3"}) || !slices.Equal(d.Gateways, []string{"gw-1", "gw-2"}) {
		t.Errorf("diff stations %v gateways %v", d.Stations, d.Gateways)
	}
	// el-1's grid is now covered by the longer prefix of st-3.
	if e, _ := n.LookupID("el-1"); e.Station.ID != "st-3" || !slices.Equal(d.Edited, []Index{el1.Index, 4, 5}) {
		t.Errorf("el-1 covered by %s; edited %v", e.Station.ID, d.Edited)
	}
	if c, _ := n.LookupID("ch-1"); c.Station.Endpoint != "https://127.0.0.1:2/new" || c.Station == ch1.Station {
		t.Errorf("ch-1's station %+v", c.Station)
	}
	if ch1.Station.Endpoint != "https://127.0.0.1:1/b" || l.Station("st-3") != nil || l.Gateways["gw-1"] == nil {
		t.Error("the old snapshot changed")
	}
	if _, ok := n.Places["450204002"]; ok || n.Places["450204003"] != "三街道" || n.Gateways["gw-1"] != nil {
		t.Errorf("places %v gateways %v", n.Places, n.Gateways)
	}
	if len(d.Reset) != 0 {
		t.Errorf("a station change reset rule state of %v", d.Reset)
	}
}

func TestEntriesRoundTrip(t *testing.T) {
	for _, text := range []string{registryLedger, uitdLedger, readFile(t, "testdata/ledger.yaml")} {
		l := mustLedger(t, text)
		e := l.Entries()
		y, err := MarshalEntries(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := ParseEntries("out.yaml", y)
		if err != nil {
			t.Fatalf("%v\n%s", err, y)
		}
		l2, err := Build("registry", e2)
		if err != nil {
			t.Fatal(err)
		}
		got, want := l2.Entries(), l.Entries()
		clearLines(got)
		clearLines(want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip differs:\n%+v\n%+v\n%s", got, want, y)
		}
		for i := range l.Devices {
			a, b := &l.Devices[i], &l2.Devices[i]
			if !deviceEqual(a, b) || a.Index != b.Index || a.flags != b.flags {
				t.Errorf("device %s differs after the round trip: %+v\n%+v", a.ID, *a, *b)
			}
		}
	}
}

func readFile(t *testing.T, name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func clearLines(e *Entries) {
	for i := range e.Devices {
		e.Devices[i].Line = 0
	}
	for i := range e.Stations {
		e.Stations[i].Line = 0
	}
	for i := range e.Gateways {
		e.Gateways[i].Line = 0
	}
	for i := range e.UITDs {
		e.UITDs[i].Line = 0
	}
}

// Readers of a snapshot see it whole while changes come (run with -race):
// snapshots are never modified, and subscribers see each change in order.
func TestLiveReadersDuringChanges(t *testing.T) {
	l := mustLedger(t, registryLedger)
	lv := NewLive(l)
	var seen []uint64
	lv.Subscribe(func(old, n *Ledger, d *Diff) {
		if n != lv.Load() || old.Version()+1 != n.Version() {
			t.Errorf("subscriber sees %d → %d, Load %d", old.Version(), n.Version(), lv.Load().Version())
		}
		seen = append(seen, n.Version())
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := lv.Load()
				n := 0
				for i := range s.Devices {
					d := &s.Devices[i]
					if d.Removed {
						continue
					}
					if got, ok := s.LookupID(d.ID); !ok || got != d {
						t.Errorf("version %d: %s not found at its slot", s.Version(), d.ID)
						return
					}
					n += len(d.Address)
				}
				if s.Len() != len(s.Devices) {
					t.Error("Len")
				}
				reads.Add(1)
			}
		}()
	}
	const changes = 200
	for i := range changes {
		c := &Change{UpsertDevices: []DeviceEntry{{ID: fmt.Sprintf("n-%d", i), Kind: "smoke", Grid: "450204002003", Address: strings.Repeat("x", i%7)}}}
		if i%3 == 2 {
			c.DeleteDevices = []string{fmt.Sprintf("n-%d", i-1)}
		}
		if _, _, err := lv.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(seen) != changes || seen[changes-1] != changes+1 {
		t.Errorf("subscriber saw %d changes, last %v", len(seen), seen[len(seen)-1:])
	}
	// A refused change stores nothing and calls nobody.
	if _, _, err := lv.Apply(&Change{DeleteDevices: []string{"nope"}}); err == nil || lv.Load().Version() != changes+1 || len(seen) != changes {
		t.Errorf("refused change: %v, version %d", err, lv.Load().Version())
	}
	// Every id index growth kept every live device findable.
	s := lv.Load()
	live := 0
	for i := range s.Devices {
		if !s.Devices[i].Removed {
			live++
			if _, ok := s.LookupID(s.Devices[i].ID); !ok {
				t.Errorf("%s lost", s.Devices[i].ID)
			}
		}
	}
	if want := 6 + changes - changes/3; live != want {
		t.Errorf("%d live devices, want %d", live, want)
	}
}
