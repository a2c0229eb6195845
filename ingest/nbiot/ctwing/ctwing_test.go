package ctwing

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The fixtures are written by hand from the captured payloads described in
// docs/nbiot.md, not produced by any encoder of ours.
func TestDecodeFixtures(t *testing.T) {
	tests := []struct {
		file     string
		typ      nbiot.Type
		imei, id string
		seq      int64
		ms       int64
		check    func(t *testing.T, r nbiot.Report)
	}{
		{"data_passthrough.json", nbiot.TypeData, "869975031234567", "0a1b2c3d4e5f60718293a4b5c6d7e8f9", -1, 1764584400123, func(t *testing.T, r nbiot.Report) {
			want := []byte{0xAA, 0x01, 0x01, 0x00, 0x5A, 0xFF, 0xA6, 0x00, 0x08}
			if !bytes.Equal(r.Payload, want) || r.JSON != nil {
				t.Errorf("payload % X json %s", r.Payload, r.JSON)
			}
			if r.Tenant != "2000033629" || r.Product != "15114816" {
				t.Errorf("tenant %q product %q", r.Tenant, r.Product)
			}
		}},
		{"data_thingmodel.json", nbiot.TypeData, "869975031234568", "15298770869975031234568", 17, 1764584460000, func(t *testing.T, r nbiot.Report) {
			var m map[string]any
			if err := json.Unmarshal(r.JSON, &m); err != nil || m["Alarm_Status"] != 1.0 || m["RSRP"] != -95.0 {
				t.Errorf("json %s (%v)", r.JSON, err)
			}
			if r.Service != "notification" {
				t.Errorf("service %q", r.Service)
			}
		}},
		{"data_flat.json", nbiot.TypeData, "869975031234569", "15298770869975031234569", 5, 1764584520000, func(t *testing.T, r nbiot.Report) {
			if !bytes.Contains(r.JSON, []byte(`"Battery_Level":15`)) {
				t.Errorf("json %s", r.JSON)
			}
		}},
		{"online.json", nbiot.TypePresence, "869975031234567", "0a1b2c3d4e5f60718293a4b5c6d7e8f9", -1, 1764584580000, func(t *testing.T, r nbiot.Report) {
			if r.Presence != nbiot.Online {
				t.Errorf("presence %v", r.Presence)
			}
		}},
		{"offline.json", nbiot.TypePresence, "", "0a1b2c3d4e5f60718293a4b5c6d7e8f9", -1, 1764584640000, func(t *testing.T, r nbiot.Report) {
			if r.Presence != nbiot.Offline {
				t.Errorf("presence %v", r.Presence)
			}
		}},
		{"event.json", nbiot.TypeEvent, "869975031234568", "15298770869975031234568", -1, 1764584700000, func(t *testing.T, r nbiot.Report) {
			if r.Service != "1001" || r.EventType != 2 || !bytes.Contains(r.JSON, []byte(`"Alarm_Status":2`)) {
				t.Errorf("service %q type %d json %s", r.Service, r.EventType, r.JSON)
			}
		}},
		{"command.json", nbiot.TypeCommand, "869975031234568", "15298770869975031234568", -1, 1764584760000, func(t *testing.T, r nbiot.Report) {
			if r.Command == nil || r.Command.ID != "42" || r.Command.Result != "SUCCESSFUL" || r.Command.Detail != `{"mute":1}` {
				t.Errorf("command %+v", r.Command)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r, err := Decode(fixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if r.Platform != nbiot.PlatformCTWing || r.Type != tt.typ || r.Device.IMEI != tt.imei || r.Device.PlatformID != tt.id || r.Seq != tt.seq {
				t.Errorf("got %v %v %+v seq %d", r.Platform, r.Type, r.Device, r.Seq)
			}
			if !r.Time.Equal(time.UnixMilli(tt.ms)) {
				t.Errorf("time %v", r.Time)
			}
			tt.check(t, r)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, body string
		want       error
	}{
		{"not json", `{"messageType":`, nbiot.ErrMalformed},
		{"array", `[1,2]`, nbiot.ErrMalformed},
		{"no type", `{"deviceId":"d1"}`, nbiot.ErrMalformed},
		{"unknown type", `{"messageType":"deviceDatasChanged","deviceId":"d1"}`, nbiot.ErrUnknownType},
		{"no device", `{"messageType":"dataReport","IMEI":"undefined","payload":{"a":1}}`, nbiot.ErrNoDevice},
		{"bad base64", `{"messageType":"dataReport","deviceId":"d1","payload":{"APPdata":"!!!"}}`, nbiot.ErrBadPayload},
		{"empty APPdata", `{"messageType":"dataReport","deviceId":"d1","payload":{"APPdata":""}}`, nbiot.ErrBadPayload},
		{"payload string", `{"messageType":"dataReport","deviceId":"d1","payload":"x"}`, nbiot.ErrBadPayload},
		{"no payload", `{"messageType":"dataReport","deviceId":"d1"}`, nbiot.ErrBadPayload},
		{"serviceData array", `{"messageType":"dataReport","deviceId":"d1","payload":{"serviceData":[1]}}`, nbiot.ErrBadPayload},
		{"presence 2", `{"messageType":"deviceOnlineOfflineReport","deviceId":"d1","eventType":2}`, nbiot.ErrBadValue},
		{"event no content", `{"messageType":"eventReport","deviceId":"d1","eventType":1}`, nbiot.ErrBadPayload},
		{"command no result", `{"messageType":"commandResponse","deviceId":"d1","taskId":1}`, nbiot.ErrMalformed},
		{"bad seq", `{"messageType":"dataReport","deviceId":"d1","upDataSN":"x","payload":{"a":1}}`, nbiot.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if nbiot.Reason(err) == "other" {
				t.Errorf("reason of %v is other", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if nbiot.Reason(err) == "other" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if r.Type == nbiot.TypeInvalid || (r.Device.IMEI == "" && r.Device.PlatformID == "") {
			t.Fatalf("accepted a report without type or device: %+v", r)
		}
		if r.Type == nbiot.TypeData && r.Payload == nil && r.JSON == nil {
			t.Fatal("data report with neither payload nor JSON")
		}
	})
}

func BenchmarkDecodePassthrough(b *testing.B) {
	body := fixture(b, "data_passthrough.json")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeThingModel(b *testing.B) {
	body := fixture(b, "data_thingmodel.json")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}
