package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/ctwing"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/onenet"
)

// TestNBIoTCommand: firesim nbiot reports each bound detector of a
// generated ledger through its platform, and the fire village's ones report
// smoke; firewatch's decoders take every push.
func TestNBIoTCommand(t *testing.T) {
	var b strings.Builder
	if err := sim.GenerateLedger(&b, sim.LedgerOptions{Devices: 300, NBIoT: 6}); err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("ledger.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	alarms := map[string]bool{} // IMEI or dev_id → reported smoke
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/nbiot/ctwing/ct-token-0123456789":
			rep, err := ctwing.Decode(body)
			if err != nil {
				t.Errorf("ctwing push: %v", err)
			}
			alarms[rep.Device.IMEI] = strings.Contains(string(rep.JSON), `"Alarm_Status":1`)
		case "/nbiot/onenet":
			reps, err := onenet.Decode(onenet.Config{Token: "on-token", AESKey: "ABCDEFGHIJKLMNOP"}, body)
			if err != nil || len(reps) != 1 {
				t.Errorf("onenet push: %v", err)
				break
			}
			alarms[reps[0].Device.PlatformID] = string(reps[0].JSON) == `{"Alarm_Status":1}`
		default:
			t.Errorf("push to %s", r.URL.Path)
		}
	}))
	defer srv.Close()
	var out strings.Builder
	err = runNBIoT(context.Background(), l, nbiotOptions{url: srv.URL, ctwingToken: "ct-token-0123456789", ctwingTen: "1", ctwingProduct: "2",
		onenetToken: "on-token", onenetAES: "ABCDEFGHIJKLMNOP", fire: "450204101201", once: true, every: 1}, &out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i := range l.Devices {
		if n := l.Devices[i].NBIoT; n != nil {
			want[n.IMEI+n.PlatformID] = strings.HasPrefix(string(l.Devices[i].Grid), "450204101201")
		}
	}
	if len(want) != 6 || len(alarms) != 6 {
		t.Fatalf("pushes for %v, want %v", alarms, want)
	}
	for k, v := range want {
		if alarms[k] != v {
			t.Errorf("detector %s reported smoke %v, want %v", k, alarms[k], v)
		}
	}
}
