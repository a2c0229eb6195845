package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// FuzzBridge: whatever a detector sends, the messages the bridge makes of
// it are well-formed for the pipeline's decoder: a value may be out of its
// plausible range (the decoder rejects and counts it), never malformed, of
// an unknown metric, or on a bad topic.
func FuzzBridge(f *testing.F) {
	f.Add([]byte{0xAA, 0x01, 0x01, 0x00, 0x5A, 0xFF, 0xA6, 0x00, 0x08}, int64(1796118000123), uint8(0))
	f.Add([]byte{0x68, 0x02, 0x01, 0xF4, 0x02, 0x3A, 0x7F, 0xFF, 0x00, 0xFA, 0xFF, 0xF6, 0x03, 0xE8, 0x00, 0x00, 0x00, 0x64,
		0x08, 0x98, 0x08, 0xA2, 0x08, 0x8E, 0x01, 0xB5}, int64(0), uint8(1))
	f.Add([]byte(`{"Alarm_Status":1,"Battery_Level":87,"RSRP":-95}`), int64(1), uint8(2))
	f.Add([]byte(`{"Alarm_Status":"2","Battery_Level":1e999,"RSRP":true}`), int64(1796118000123), uint8(2))
	l := ledger(f, testLedger)
	dec := ingest.NewDecoder(l)
	var msgs []string
	b, err := New(Config{}, Options{Ledger: l, Handle: func(topic string, payload []byte) error {
		msgs = append(msgs, topic)
		_, rejects := dec.Decode(topic, payload, 1796118000000)
		for _, r := range rejects {
			switch r.Reason {
			case ingest.ReasonOutOfRange, ingest.ReasonNotFinite:
			default:
				f.Fatalf("%s %s: rejected %v", topic, payload, r)
			}
		}
		return nil
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, ms int64, which uint8) {
		r := nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypeData}
		if ms > 0 {
			r.Time = time.UnixMilli(ms % (1 << 46))
		}
		switch which % 3 {
		case 0:
			r.Device.IMEI, r.Payload = "869975031234567", data // NB-SMOKE-BIN
		case 1:
			r.Device.IMEI, r.Payload = "869975031234569", data // NB-EFM
		default:
			r.Device.PlatformID, r.JSON = "523456791", data // NB-SMOKE-TM
		}
		msgs = msgs[:0]
		if err := b.Submit(context.Background(), []nbiot.Report{r}); err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			t.Fatal("a report of a bound device made no message (not even a heartbeat)")
		}
	})
}
