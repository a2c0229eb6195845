package nbiot_test

import (
	"os"
	"testing"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/ctwing"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/onenet"
)

// TestChain decodes hand-written platform fixtures and applies the shipped
// product codecs to them, as the source will: a smoke alarm in a CTWing
// passthrough frame and in a CTWing thing model, and a OneNET data point
// with a codec written for its data stream.
func TestChain(t *testing.T) {
	cs, err := nbiot.ShippedCodecs()
	if err != nil {
		t.Fatal(err)
	}
	active := func(r nbiot.Report, name string) bool {
		for _, v := range r.Values {
			if v.Metric.Info().Name == name && v.Value == 1 {
				return true
			}
		}
		return false
	}
	for _, c := range []struct{ file, product string }{
		{"ctwing/testdata/data_passthrough.json", "NB-SMOKE-BIN"},
		{"ctwing/testdata/data_thingmodel.json", "NB-SMOKE-TM"},
	} {
		b, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ctwing.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := cs[c.product].Apply(&r); err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if !active(r, "smoke_alarm") {
			t.Errorf("%s with %s: no smoke alarm in %+v", c.file, c.product, r.Values)
		}
	}

	codec, err := nbiot.ParseCodec("lwm2m.yaml", []byte(`product: LWM2M-SMOKE
kind: smoke
format: json
fields:
  - {path: 3200_0_5500, metric: smoke_alarm, unit: event}
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("onenet/testdata/legacy_datapoint.json")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := onenet.Decode(onenet.Config{Token: "fwtoken2026"}, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := codec.Apply(&rs[0]); err != nil || !active(rs[0], "smoke_alarm") {
		t.Errorf("onenet data point: %v %+v", err, rs[0].Values)
	}
}
