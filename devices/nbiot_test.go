package devices

import (
	"strings"
	"testing"
	"time"
)

const nbiotLedger = `
stations:
  - {id: st-1, name: 站, grids: ["450204"], endpoint: "http://127.0.0.1:1/d"}
devices:
  - id: sm-1
    kind: smoke
    grid: "450204002003"
    nbiot: {imei: "869975031234567", product: NB-SMOKE-TM, responsible: 韦建国, mobile: "13800000000"}
  - id: sm-2
    kind: smoke
    grid: "450204002003"
    nbiot: {platform_id: "523456791", serial: "ABCD01250601SN00000010A1F2E"}
  - id: sm-3
    kind: smoke
    grid: "450204002003"
`

func TestLedgerNBIoT(t *testing.T) {
	l, err := ParseLedger("l.yaml", []byte(nbiotLedger))
	if err != nil {
		t.Fatal(err)
	}
	if n := l.Devices[0].NBIoT; n == nil || n.IMEI != "869975031234567" || n.Product != "NB-SMOKE-TM" || n.Mobile != "13800000000" {
		t.Errorf("sm-1 binding %+v", n)
	}
	if l.Devices[2].NBIoT != nil {
		t.Errorf("sm-3 has a binding it was not given: %+v", l.Devices[2].NBIoT)
	}
	x, err := l.NBIoTIndex()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		imei, pid, serial string
		want              string
	}{
		{"869975031234567", "", "", "sm-1"},
		{"", "523456791", "", "sm-2"},
		{"", "", "ABCD01250601SN00000010A1F2E", "sm-2"},
		{"869975030000000", "523456791", "", "sm-2"}, // an unbound IMEI, a bound platform id
		{"869975030000000", "", "", ""},
	} {
		i, ok := x.Find(c.imei, c.pid, c.serial)
		got := ""
		if ok {
			got = l.Device(i).ID
		}
		if got != c.want {
			t.Errorf("Find(%q, %q, %q) = %q, want %q", c.imei, c.pid, c.serial, got, c.want)
		}
	}
}

func TestLedgerNBIoTErrors(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{`imei: "869975031234567"`, `imei: "86997503123456X"`, `l.yaml:5: device "sm-1": nbiot: imei "86997503123456X" is not 14 to 16 digits`},
		{`{platform_id: "523456791", serial: "ABCD01250601SN00000010A1F2E"}`, `{product: NB-SMOKE-TM}`, `l.yaml:9: device "sm-2": nbiot: set imei, platform_id or serial`},
		{`mobile: "13800000000"`, `mobile: "call me"`, `l.yaml:5: device "sm-1": nbiot: mobile "call me" is not a phone number`},
		{`product: NB-SMOKE-TM,`, `produkt: NB-SMOKE-TM,`, `l.yaml:5: device: `},
	} {
		_, err := ParseLedger("l.yaml", []byte(strings.Replace(nbiotLedger, c.from, c.to, 1)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
	l, err := ParseLedger("l.yaml", []byte(strings.Replace(nbiotLedger, `platform_id: "523456791"`, `imei: "869975031234567"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.NBIoTIndex(); err == nil || !strings.Contains(err.Error(), `l.yaml:9: device "sm-2": nbiot imei "869975031234567" is also bound to "sm-1" (line 5)`) {
		t.Errorf("duplicate imei: %v", err)
	}
}

// TestLivenessLostWithin: an NB-IoT detector bound in the ledger is shown
// lost within GB/T 45839's 24 h although its kind's heartbeat × missed
// (24 h × 2) is longer; other devices keep their grace, and a bound
// detector reporting often keeps its shorter one.
func TestLivenessLostWithin(t *testing.T) {
	l := fleet(3, KindSmoke)
	l.Devices[0].NBIoT = &NBIoT{IMEI: "869975031234567"}
	l.Devices[2].NBIoT = &NBIoT{IMEI: "869975031234568"}
	l.Devices[2].Heartbeat = 4 * time.Hour
	sink := &liveSink{}
	const t0 = int64(1_796_000_000_000)
	lv, err := NewLiveness(l, LivenessConfig{Tick: time.Minute, Missed: 2, LostWithin: 24 * time.Hour}, sink, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{24 * time.Hour, 48 * time.Hour, 8 * time.Hour} {
		if g := lv.Status(Index(i)).Grace; g != want {
			t.Errorf("device %d: grace %v, want %v", i, g, want)
		}
	}
	lv.Tick(t0 + (24*time.Hour + time.Minute).Milliseconds())
	offline := map[Index]bool{}
	for _, e := range sink.evs {
		if !e.online {
			offline[e.d] = true
		}
	}
	if !offline[0] || offline[1] || !offline[2] {
		t.Errorf("offline after 24 h and a tick: %v, want the two bound detectors only", offline)
	}
}
