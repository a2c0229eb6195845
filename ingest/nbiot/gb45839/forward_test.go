package gb45839

import (
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// TestStatusBody: the status_info of a report to a 中心级 platform, byte for
// byte as written by hand from Appendix D's field table, and read back by
// our own decoder; unknown vitals are left out; a device without a serial
// is not forwarded.
func TestStatusBody(t *testing.T) {
	d := &devices.Device{ID: "sm-1", NBIoT: &devices.NBIoT{Serial: "ABCD01250601SN00000010A1F2E"}}
	f := NewForwarder(Forward{URL: "https://centre.example/x", Company: "ABCD"}, func(id string) (int, bool, int, bool) {
		return -99, id == "sm-1", 76, id == "sm-1"
	})
	at := time.Date(2026, 12, 1, 1, 2, 3, 0, time.UTC) // 09:02:03 CST
	b, ok, err := f.StatusBody(d, StatusAlarm, at)
	want := `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":2,"signalStrength":-99,"batteryPercentage":76,"datetime":"2026-12-01 09:02:03"}`
	if err != nil || !ok || string(b) != want {
		t.Fatalf("StatusBody = %s %v %v\nwant %s", b, ok, err, want)
	}
	r, err := DecodeStatus(b)
	if err != nil || !r.Time.Equal(at) || r.Signal != -99 {
		t.Errorf("read back: %+v %v", r, err)
	}
	d2 := &devices.Device{ID: "sm-2", NBIoT: &devices.NBIoT{Serial: "ABCD01250601SN00000010A1F2E"}}
	b, _, _ = f.StatusBody(d2, StatusNormal, at)
	if want := `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":1,"datetime":"2026-12-01 09:02:03"}`; string(b) != want {
		t.Errorf("unknown vitals: %s", b)
	}
	for _, d := range []*devices.Device{{ID: "x"}, {ID: "y", NBIoT: &devices.NBIoT{IMEI: "869975031234567"}}} {
		if _, ok, err := f.StatusBody(d, StatusFault, at); ok || err != nil {
			t.Errorf("device %s without a serial forwarded: %v %v", d.ID, ok, err)
		}
	}
}

// TestCheckForward: a malformed serial is refused with its device; a
// bound detector without one is listed.
func TestCheckForward(t *testing.T) {
	l := &devices.Ledger{Devices: []devices.Device{
		{ID: "ok", NBIoT: &devices.NBIoT{Serial: "ABCD01250601SN00000010A1F2E"}},
		{ID: "imei-only", NBIoT: &devices.NBIoT{IMEI: "869975031234567"}},
		{ID: "plain"},
	}}
	no, err := CheckForward(l)
	if err != nil || len(no) != 1 || no[0] != "imei-only" {
		t.Fatalf("CheckForward = %v %v", no, err)
	}
	l.Devices = append(l.Devices, devices.Device{ID: "bad", NBIoT: &devices.NBIoT{Serial: "abcd01250601SN00000010A1F2E"}},
		devices.Device{ID: "binary", NBIoT: &devices.NBIoT{Serial: "ABCD01250601SN0000001\xa1\x0a1F2E"}})
	_, err = CheckForward(l)
	if err == nil || !strings.Contains(err.Error(), `device "bad": `) || !strings.Contains(err.Error(), `device "binary": serial's TAC is binary`) {
		t.Errorf("CheckForward of a bad serial: %v", err)
	}
	if (Forward{URL: "ftp://x"}).Validate() == nil || (Forward{URL: "https://c.example/s"}).Validate() == nil ||
		(Forward{URL: "https://c.example/s", Company: "ABCD"}).Validate() != nil || (Forward{}).Validate() != nil {
		t.Error("Forward.Validate")
	}
}
