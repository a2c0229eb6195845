package devices

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

const uitdLedger = `
stations:
  - {id: st-1, name: 一站, grids: ["450204"], endpoint: "http://127.0.0.1:1/x"}
devices:
  - {id: uitd-1, kind: facility, grid: "450204002003", address: 柳石家园 消防控制室}
  - {id: fa-1, kind: facility, grid: "450204002003", address: 3号楼2层走廊}
  - {id: fa-2, kind: facility, grid: "450204002003", heartbeat: 1h}
  - {id: sm-1, kind: smoke, grid: "450204002003"}
uitds:
  - address: "010203040506"
    device: uitd-1
    patrol: 30m
    networks: ["10.8.0.0/16", "192.168.1.7"]
    points:
      - {system: 1, system_addr: 1, type: 42, addr: 0x105, device: fa-1}
      - {system: 11, system_addr: 2, device: fa-2}
`

func TestUITDLedger(t *testing.T) {
	l, err := ParseLedger("l.yaml", []byte(uitdLedger))
	if err != nil {
		t.Fatal(err)
	}
	u, ok := l.UITD([6]byte{1, 2, 3, 4, 5, 6})
	if !ok || len(l.UITDs()) != 1 || l.Device(u.Device).ID != "uitd-1" || u.Patrol != 30*time.Minute {
		t.Fatalf("UITD = %+v, %v", u, ok)
	}
	// The patrol period sets the heartbeat of the UITD's device: offline after DefaultMissed of them.
	if hb := l.Device(u.Device).Heartbeat; hb != 15*time.Minute {
		t.Errorf("UITD device heartbeat %v, want 15m", hb)
	}
	fa1, _ := l.LookupID("fa-1")
	fa2, _ := l.LookupID("fa-2")
	for _, c := range []struct {
		p      FacilityPoint
		dev    Index
		listed bool
	}{
		{FacilityPoint{SystemType: 1, SystemAddr: 1, Component: true, Addr: 0x105}, fa1.Index, true},
		{FacilityPoint{SystemType: 11, SystemAddr: 2}, fa2.Index, true},
		// Not listed: the UITD's own device, never nowhere.
		{FacilityPoint{SystemType: 1, SystemAddr: 1, Component: true, Addr: 0x106}, u.Device, false},
		{FacilityPoint{SystemType: 1, SystemAddr: 1}, u.Device, false},
	} {
		if d, listed := u.DeviceOf(c.p); d != c.dev || listed != c.listed {
			t.Errorf("DeviceOf(%+v) = %d %v, want %d %v", c.p, d, listed, c.dev, c.listed)
		}
	}
	for addr, want := range map[string]bool{"10.8.3.4": true, "192.168.1.7": true, "192.168.1.8": false, "::ffff:10.8.0.1": true} {
		if got := u.Admits(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Admits(%s) = %v", addr, got)
		}
	}
	if _, ok := l.UITD([6]byte{1, 2, 3, 4, 5, 7}); ok {
		t.Error("an unknown address was found")
	}
	// Listed points are named as the dispatcher reads them (the example): where the controller
	// is, the system, the component type and address.
	for id, want := range map[string]string{
		"fa-1":   "柳石家园 消防控制室 火灾报警系统1 点型光电感烟火灾探测器 0x00000105",
		"fa-2":   "柳石家园 消防控制室 消火栓系统2",
		"uitd-1": "",
		"sm-1":   "",
	} {
		if d, _ := l.LookupID(id); d.Point != want {
			t.Errorf("%s: Point %q, want %q", id, d.Point, want)
		}
	}
}

func TestUITDLedgerProblems(t *testing.T) {
	for _, c := range []struct{ uitds, want string }{
		{`[{address: "0102030405", device: uitd-1}]`, "not 12 hex digits"},
		{`[{address: "010203040506"}]`, "device is missing"},
		{`[{address: "010203040506", device: nope}]`, `unknown device "nope"`},
		{`[{address: "010203040506", device: sm-1}]`, "want facility"},
		{`[{address: "010203040506", device: uitd-1}, {address: "010203040506", device: fa-1}]`, "duplicate address"},
		{`[{address: "010203040506", device: uitd-1}, {address: "010203040507", device: uitd-1}]`, "already reported by uitd"},
		{`[{address: "010203040506", device: uitd-1, networks: [nonsense]}]`, "network"},
		{`[{address: "010203040506", device: uitd-1, points: [{system: 1, device: fa-1}]}]`, "system and system_addr"},
		{`[{address: "010203040506", device: uitd-1, points: [{system: 1, system_addr: 1, addr: 5, device: fa-1}, {system: 1, system_addr: 1, addr: 5, device: fa-2}]}]`, "listed twice"},
		{`[{address: "010203040506", device: uitd-1, points: [{system: 1, system_addr: 1, type: 256, addr: 5, device: fa-1}]}]`, "type 256"},
	} {
		y := uitdLedger[:strings.Index(uitdLedger, "uitds:")] + "uitds: " + c.uitds + "\n"
		_, err := ParseLedger("l.yaml", []byte(y))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("uitds %s: error %v, want %q", c.uitds, err, c.want)
		}
	}
}
