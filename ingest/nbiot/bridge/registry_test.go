package bridge

import (
	"context"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// TestAdoptRegistryChange: a detector bound by a live registry change is
// found at once; one removed is unknown (a pending entry) from then on.
func TestAdoptRegistryChange(t *testing.T) {
	rec := &recorder{}
	b, _ := newBridge(t, Config{}, rec)
	l := b.ledger
	report := func(imei string) nbiot.Report {
		return nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypeData, Time: at,
			Device: nbiot.DeviceKey{IMEI: imei}, Payload: unhex(t, "AA 01 01 00 5A FF A6 00 08")}
	}
	n, _, err := l.Apply(&devices.Change{
		UpsertDevices: []devices.DeviceEntry{{ID: "sm-new", Kind: "smoke", Grid: "450204002003",
			NBIoT: devices.NBIoT{IMEI: "869975030000001", Product: "NB-SMOKE-BIN"}}},
		DeleteDevices: []string{"sm-bin"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Adopt(n); err != nil {
		t.Fatal(err)
	}
	if err := b.Submit(context.Background(), []nbiot.Report{report("869975030000001"), report("869975031234567")}); err != nil {
		t.Fatal(err)
	}
	got := rec.take()
	if len(got) == 0 || got[0][:len("fw/v1/up/sm-new/")] != "fw/v1/up/sm-new/" {
		t.Errorf("messages %q: want the newly bound detector's", got)
	}
	for _, m := range got {
		if len(m) >= len("fw/v1/up/sm-bin/") && m[:len("fw/v1/up/sm-bin/")] == "fw/v1/up/sm-bin/" {
			t.Errorf("a removed detector's report reached the pipeline: %s", m)
		}
	}
	if p := b.Pending(); len(p) != 1 || p[0].IMEI != "869975031234567" {
		t.Errorf("pending %+v: want the removed detector", p)
	}
}
