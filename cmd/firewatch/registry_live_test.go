package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/devices"
)

// TestRegistryLiveUnderLoad changes the registry live (devices.Live.Apply,
// what the registry's API calls) while a fleet publishes through the real
// embedded broker: a device added connects at once with its own secret and
// its first alarm reaches the HTTP receiver; an edited device (its address)
// keeps its pending `for`, one whose channels change (a rule-state reset,
// as a kind change) starts it again; a removed device's open alarm is
// closed with the closing push at the receiver and its messages are
// rejected as unknown; and every reading of the fleet is counted once —
// none lost, none twice.
func TestRegistryLiveUnderLoad(t *testing.T) {
	rcv := newReceiver(t)
	// Every alarm pushed on its own (a station's alarms close together are
	// otherwise grouped into one incident push).
	s, url, secret := embeddedService(t, rcv, func(c *Config) { c.Alarms.StormWindow = 0 })
	fleet := mqttClient(t, url, "bridge", "bridge", secret)
	base := time.Now().Add(-time.Minute).UnixMilli()

	// The fleet: the test ledger's devices, below every threshold.
	const per = 150
	var wg sync.WaitGroup
	for k, dev := range []struct{ id, m string }{
		{"el-1", `"residual_current_ma":20`}, {"hy-1", `"pressure_mpa":0.3`}, {"ch-1", `"ch":1,"m":{"slot_temp_c":30}`},
	} {
		wg.Go(func() {
			for i := range per {
				body := `"m":{` + dev.m + `}`
				if dev.id == "ch-1" {
					body = dev.m
				}
				publish(t, fleet, "fw/v1/up/"+dev.id+"/telemetry", fmt.Sprintf(`{"ts":%d,"seq":%d,%s}`, base+int64(i*100+k), i+1, body))
			}
		})
	}
	apply := func(c *devices.Change) {
		t.Helper()
		if _, _, err := s.registry.Apply(c); err != nil {
			t.Fatalf("registry change: %v", err)
		}
	}
	hash, err := broker.HashSecret([]byte("el-new-secret"))
	if err != nil {
		t.Fatal(err)
	}
	el := func(id, addr string, ch int) devices.DeviceEntry {
		return devices.DeviceEntry{ID: id, Kind: "electrical", Grid: "450204002003", Address: addr, Channels: ch}
	}
	newDev := el("el-new", "鹅山路30号", 0)
	newDev.SecretHash = hash
	apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{newDev, el("el-edit", "鹅山路31号", 0), el("el-reset", "鹅山路32号", 0), el("el-gone", "鹅山路33号", 0)}})

	// residual_current.alarm: above 300 mA for 10 s.
	send := func(id string, seq int, at int64, ma int) {
		publish(t, fleet, "fw/v1/up/"+id+"/telemetry", fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":%d}}`, at, seq, ma))
	}
	// The new device publishes with its own secret, at once.
	own := mqttClient(t, url, "el-new", "el-new", "el-new-secret")
	publish(t, own, "fw/v1/up/el-new/telemetry", fmt.Sprintf(`{"ts":%d,"seq":1,"m":{"residual_current_ma":350}}`, base))
	publish(t, own, "fw/v1/up/el-new/telemetry", fmt.Sprintf(`{"ts":%d,"seq":2,"m":{"residual_current_ma":351}}`, base+10_000))
	isRaised := func(id string) func(map[string]any) bool {
		return func(b map[string]any) bool {
			dev, _ := b["device"].(map[string]any)
			return b["transition"] == "raised" && b["rule"] == "electrical.residual_current.alarm" && dev["id"] == id
		}
	}
	rcv.nextPush(t, 15*time.Second, "the new device's first alarm", isRaised("el-new"))

	// el-gone raises an alarm, then is removed.
	send("el-gone", 1, base, 350)
	send("el-gone", 2, base+10_000, 350)
	raised, _ := rcv.nextPush(t, 15*time.Second, "el-gone's alarm", isRaised("el-gone"))
	// Pending `for` of el-edit and el-reset, then the edits.
	send("el-edit", 1, base, 350)
	send("el-reset", 1, base, 350)
	apply(&devices.Change{
		UpsertDevices: []devices.DeviceEntry{el("el-edit", "鹅山路31号之一", 0), el("el-reset", "鹅山路32号", 2)},
		DeleteDevices: []string{"el-gone"},
	})
	rcv.nextPush(t, 15*time.Second, "the closing push of the removed device's alarm", func(b map[string]any) bool {
		return b["alarm_id"] == raised["alarm_id"] && b["transition"] == "auto_cleared"
	})
	send("el-gone", 3, base+11_000, 350) // rejected: not in the registry
	// The devices API follows: the new device is listed, the removed one
	// is not.
	if st := getDevice(t, s, "el-new"); st["id"] != "el-new" || st["online"] != true {
		t.Errorf("devices API, el-new: %v", st)
	}
	if resp, err := http.Get(s.httpURL() + "/api/v1/devices/el-gone"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("devices API, removed el-gone: %v %v", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	send("el-edit", 2, base+10_000, 350)
	rcv.nextPush(t, 15*time.Second, "the edited device's alarm on time", isRaised("el-edit"))
	send("el-reset", 2, base+10_000, 350)
	send("el-reset", 3, base+20_000, 350)
	wg.Wait()
	// el-reset's alarm comes only after its restarted `for`: at +20 s,
	// not +10 s.
	rcv.nextPush(t, 15*time.Second, "the reset device's alarm", isRaised("el-reset"))
	as, err := s.alarms.List(context.Background(), alarms.Filter{Device: "el-reset"})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].DeviceTime.UnixMilli() != base+20_000 {
		t.Errorf("reset device's alarms %+v: want one, at +20 s (its for restarted at the change)", as)
	}

	m := scrape(t, s.httpURL()+"/metrics")
	const testReadings = 2 + 2 + 2 + 3 // el-new, el-gone (before removal), el-edit, el-reset
	if got, want := m["firewatch_ingest_readings_total"], float64(3*per+testReadings); got != want {
		t.Errorf("readings counted %v, want %v: lost or doubled during registry changes", got, want)
	}
	if got := m[`firewatch_ingest_rejected_total{reason="unknown_device"}`]; got != 1 {
		t.Errorf("unknown_device rejections %v, want 1 (the removed device's message)", got)
	}
	if got := m["firewatch_ingest_duplicates_total"]; got != 0 {
		t.Errorf("duplicates %v, want 0", got)
	}
}

// TestCheckRegistryChange: a change whose device override names no rule,
// or whose secret_hash is not a hash, is refused before it is committed,
// each problem naming the entry and the field.
func TestCheckRegistryChange(t *testing.T) {
	rcv := newReceiver(t)
	s, _, _ := embeddedService(t, rcv, nil)
	l, d, err := s.registry.Load().Apply(&devices.Change{
		UpsertDevices: []devices.DeviceEntry{
			{ID: "el-x", Kind: "electrical", Grid: "450204002003", Rules: "electrical.nope: {above: 1}\n"},
			{ID: "el-y", Kind: "electrical", Grid: "450204002003", SecretHash: "not-a-hash"},
		},
		UpsertGateways: []devices.GatewayEntry{{ID: "gw-9", SecretHash: "nor-this"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.checkRegistryChange(l, d)
	var le *devices.LoadError
	if !errors.As(err, &le) || len(le.Problems) != 3 {
		t.Fatalf("check: %v, want three problems", err)
	}
	for i, want := range []string{"el-x/rules", "el-y/secret_hash", "gw-9/secret_hash"} {
		p := le.Problems[i]
		got := p.ID
		if p.Field != "" {
			got += "/" + p.Field
		}
		if got != want {
			t.Errorf("problem %d: %s (%s), want %s", i, got, p.Reason, want)
		}
	}
	if l, d, err := s.registry.Load().Apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{{ID: "el-z", Kind: "electrical", Grid: "450204002003"}}}); err != nil {
		t.Fatal(err)
	} else if err := s.checkRegistryChange(l, d); err != nil {
		t.Errorf("a good change refused: %v", err)
	}
}
