package bridge

import (
	"context"
	"testing"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// BenchmarkSubmit: one thing-model report (codec, MQTT-contract messages)
// into a pipeline that does nothing: the bridge's own cost per push.
func BenchmarkSubmit(b *testing.B) {
	br, err := New(Config{}, Options{Ledger: ledger(b, testLedger), Handle: func(string, []byte) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	js := []byte(`{"Alarm_Status":0,"Battery_Level":87,"RSRP":-95}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r := nbiot.Report{Platform: nbiot.PlatformOneNET, Type: nbiot.TypeData, Time: at,
			Device: nbiot.DeviceKey{PlatformID: "523456791"}, JSON: js}
		if err := br.Submit(ctx, []nbiot.Report{r}); err != nil {
			b.Fatal(err)
		}
	}
}
