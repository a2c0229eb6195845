package sim

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/ctwing"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/onenet"
)

// The emulators' pushes decode with firewatch's decoders (written from the
// same documents, separately), AES mode included.
func TestNBIoTEmulators(t *testing.T) {
	at := time.UnixMilli(1796118000123)
	r, err := ctwing.Decode(CTWingDataReport("2000033629", "15298770", "15298770869975031234568", "869975031234568", 7, at, SmokeState{AlarmStatus: 1, Battery: 80, RSRP: -97}))
	if err != nil || r.Device.IMEI != "869975031234568" || r.Tenant != "2000033629" || r.Product != "15298770" || !r.Time.Equal(at) ||
		string(r.JSON) == "" {
		t.Fatalf("ctwing: %+v %v", r, err)
	}
	for _, key := range []string{"", "ABCDEFGHIJKLMNOP"} {
		body, err := OneNETPush("fw-onenet-token-2026", key, OneNETDataPoint(523456791, "Alarm_Status", at, 1), at)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := onenet.Decode(onenet.Config{Token: "fw-onenet-token-2026", AESKey: key}, body)
		if err != nil || len(rs) != 1 || rs[0].Device.PlatformID != "523456791" || string(rs[0].JSON) != `{"Alarm_Status":1}` {
			t.Fatalf("onenet (key %q): %+v %v", key, rs, err)
		}
		if _, err := onenet.Decode(onenet.Config{Token: "another-token", AESKey: key}, body); !errors.Is(err, nbiot.ErrSignature) {
			t.Errorf("onenet (key %q) under another token: %v", key, err)
		}
	}
}

// Push retries until a 200, and stops at a refusal.
func TestPush(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 2:
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case 3:
			w.WriteHeader(http.StatusOK)
		default:
			http.Error(w, "bad", http.StatusForbidden)
		}
	}))
	defer srv.Close()
	backoff := []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	if n, err := Push(context.Background(), srv.Client(), srv.URL, []byte(`{}`), backoff); err != nil || n != 3 {
		t.Fatalf("push: %d attempts, %v", n, err)
	}
	if n, err := Push(context.Background(), srv.Client(), srv.URL, []byte(`{}`), backoff); !errors.Is(err, ErrRefused) || n != 1 {
		t.Fatalf("refused push: %d attempts, %v", n, err)
	}
}

// The MQTT fleet leaves out the detectors that report through a platform,
// also in a fire scenario of their village.
func TestFleetSkipsNBIoT(t *testing.T) {
	var b strings.Builder
	if err := GenerateLedger(&b, LedgerOptions{Devices: 300, NBIoT: 6}); err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("l.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	bound := map[string]bool{}
	for i := range l.Devices {
		if l.Devices[i].NBIoT != nil {
			bound[l.Devices[i].ID] = true
		}
	}
	if len(bound) != 6 {
		t.Fatalf("%d bound detectors, want 6", len(bound))
	}
	f := NewFleet(l, 1)
	now := time.UnixMilli(1796118000000)
	if _, err := f.Start(Scenario{Kind: ScenarioFire, Target: "450204101201"}, now); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	for i := range 3000 {
		topic, _ := f.Next(now.Add(time.Duration(i)*time.Millisecond), buf)
		if dev := strings.Split(topic, "/")[3]; bound[dev] {
			t.Fatalf("message %d on %s of an NB-IoT detector", i, topic)
		}
	}
}
