package nbiot

import (
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// readHex reads a hand-written hex fixture: '#' comments, bytes separated
// by blanks.
func readHex(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, f := range strings.Fields(line) {
			if f != "|" {
				sb.WriteString(f)
			}
		}
	}
	out, err := hex.DecodeString(sb.String())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func shippedCodec(t testing.TB, product string) *Codec {
	t.Helper()
	cs, err := ShippedCodecs()
	if err != nil {
		t.Fatal(err)
	}
	c, ok := cs[product]
	if !ok {
		t.Fatalf("no shipped codec %s", product)
	}
	return c
}

type want struct {
	name string
	ch   int
	v    float64 // NaN: null
}

func check(t *testing.T, c *Codec, got []Value, w []want) {
	t.Helper()
	if len(got) != len(w) {
		t.Fatalf("%d values %v, want %d", len(got), got, len(w))
	}
	for i, v := range got {
		if v.Metric.Info().Kind != c.Kind {
			t.Errorf("%d: kind %v", i, v.Metric.Info().Kind)
		}
		ok := v.Metric.Info().Name == w[i].name && v.Ch == w[i].ch &&
			(math.IsNaN(w[i].v) && math.IsNaN(v.Value) || math.Abs(v.Value-w[i].v) < 1e-9)
		if !ok {
			t.Errorf("%d: %s ch %d = %v, want %s ch %d = %v", i, v.Metric.Info().Name, v.Ch, v.Value, w[i].name, w[i].ch, w[i].v)
		}
	}
}

func TestShippedCodecs(t *testing.T) {
	cs, err := ShippedCodecs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) < 3 {
		t.Fatalf("%d codecs", len(cs))
	}
}

func TestApplySmokeThingModel(t *testing.T) {
	c := shippedCodec(t, "NB-SMOKE-TM")
	b, _ := os.ReadFile("testdata/smoke_tm_alarm.json")
	r := Report{JSON: b}
	if err := c.Apply(&r); err != nil {
		t.Fatal(err)
	}
	// Alarm_Status 1 raises smoke_alarm and says nothing of the others.
	check(t, c, r.Values, []want{{"smoke_alarm", 0, 1}, {"battery_pct", 0, 87}, {"rssi_dbm", 0, -95}})

	r = Report{JSON: []byte(`{"Alarm_Status":"0"}`)}
	if err := c.Apply(&r); err != nil {
		t.Fatal(err)
	}
	check(t, c, r.Values, []want{{"smoke_alarm", 0, 0}, {"fault", 0, 0}, {"low_battery", 0, 0}, {"tamper", 0, 0}, {"self_test", 0, 0}, {"silence", 0, 0}})

	// A fault report does not clear a smoke alarm.
	r = Report{JSON: []byte(`{"Alarm_Status":2}`)}
	if err := c.Apply(&r); err != nil {
		t.Fatal(err)
	}
	check(t, c, r.Values, []want{{"fault", 0, 1}})

	// A bad battery value is reported, and the smoke alarm beside it kept.
	r = Report{JSON: []byte(`{"Alarm_Status":1,"Battery_Level":"high","RSRP":{"v":1}}`)}
	err := c.Apply(&r)
	if !errors.Is(err, ErrCodec) || !strings.Contains(err.Error(), "Battery_Level") || !strings.Contains(err.Error(), "RSRP") {
		t.Errorf("err %v", err)
	}
	check(t, c, r.Values, []want{{"smoke_alarm", 0, 1}})

	// Passthrough bytes for a JSON product, and JSON that is not JSON.
	if err := c.Apply(&Report{Payload: []byte{1}}); !errors.Is(err, ErrCodec) {
		t.Errorf("payload: %v", err)
	}
	if err := c.Apply(&Report{JSON: []byte(`{"Alarm_Status":`)}); !errors.Is(err, ErrCodec) {
		t.Errorf("broken json: %v", err)
	}
}

func TestApplySmokeBinary(t *testing.T) {
	c := shippedCodec(t, "NB-SMOKE-BIN")
	r := Report{Payload: readHex(t, "smoke_bin_alarm.hex")}
	if err := c.Apply(&r); err != nil {
		t.Fatal(err)
	}
	check(t, c, r.Values, []want{{"smoke_alarm", 0, 1}, {"fault", 0, 0}, {"low_battery", 0, 0}, {"tamper", 0, 0},
		{"silence", 0, 0}, {"self_test", 0, 0}, {"battery_pct", 0, 90}, {"rssi_dbm", 0, -90}})

	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"short", []byte{0xAA, 0x01, 0x01}},
		{"header", []byte{0xAB, 0x01, 0x01, 0x00, 0x5A, 0xFF, 0xA6, 0x00, 0x08}},
		{"json", nil},
	} {
		r := Report{Payload: tc.p}
		if tc.p == nil {
			r.JSON = []byte(`{}`)
		}
		if err := c.Apply(&r); !errors.Is(err, ErrCodec) || len(r.Values) != 0 {
			t.Errorf("%s: %v %v", tc.name, err, r.Values)
		}
	}
}

func TestApplyElectrical(t *testing.T) {
	c := shippedCodec(t, "NB-EFM")
	r := Report{Payload: readHex(t, "efm_frame.hex")}
	if err := c.Apply(&r); err != nil {
		t.Fatal(err)
	}
	check(t, c, r.Values, []want{
		{"residual_current_ma", 0, 500},
		{"cable_temp_c", 1, 57}, {"cable_temp_c", 2, math.NaN()}, {"cable_temp_c", 3, 25}, {"cable_temp_c", 4, -1},
		{"phase_current_a", 1, 10}, {"phase_current_a", 2, 0}, {"phase_current_a", 3, 1},
		{"voltage_v", 1, 220}, {"voltage_v", 2, 221}, {"voltage_v", 3, 219},
		{"fault", 0, 1}, {"rssi_dbm", 0, -75},
	})
}

func TestParseCodecErrors(t *testing.T) {
	src := `product: X
kind: smoke
format: binary
header: "AA"
min_length: 4
fields:
  - {offset: 0, type: u8, metric: smoke_alarm, unit: event}
  - {offset: 1, type: u8, metric: smoke_alarm, unit: event}
  - {offset: 1, type: u9, metric: fault, unit: event}
  - {offset: 3, type: u16, metric: battery_pct, unit: "%"}
  - {offset: 1, type: u8, metric: battery, unit: "%"}
  - {offset: 1, type: u8, metric: rssi_dbm, unit: dB}
  - {offset: 1, type: u8, bit: 8, metric: tamper, unit: event}
  - {offset: 1, type: u8, metric: silence, unit: event, scale: 2}
  - {path: a, metric: self_test, unit: event}
  - {offset: 1, type: u8, metric: heartbeat, unit: event, active: [1], inactive: [1]}
  - {offset: 1, type: u8, metric: low_battery, unit: event, colour: red}
`
	_, err := ParseCodec("x.yaml", []byte(src))
	var le *devices.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("%v", err)
	}
	wantLines := map[int]string{
		8:  "already mapped at line 7",
		9:  "type \"u9\"",
		10: "beyond min_length",
		11: "not in the catalog",
		12: "unit \"dB\"",
		13: "bit 8 outside",
		14: "is an event",
		15: "not path",
		16: "both active and inactive",
		17: "colour",
	}
	for line, frag := range wantLines {
		found := false
		for _, p := range le.Problems {
			if p.Line == line && strings.Contains(p.Reason, frag) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at line %d containing %q in:\n%v", line, frag, err)
		}
	}
	if !strings.Contains(err.Error(), "x.yaml:9: ") {
		t.Errorf("no file:line in %v", err)
	}
	for _, bad := range []string{
		"",
		"product: X\nkind: smoke\nformat: csv\nfields: [{path: a, metric: smoke_alarm, unit: event}]\n",
		"product: X\nkind: boat\nformat: json\nfields: [{path: a, metric: smoke_alarm, unit: event}]\n",
		"product: X\nkind: smoke\nformat: json\nfields: []\n",
		"product: X\nkind: smoke\nformat: json\nheader: AA\nfields: [{path: a, metric: smoke_alarm, unit: event}]\n",
		"product: X\nkind: smoke\nformat: json\nfields: [{path: a..b, metric: smoke_alarm, unit: event}]\n",
		"product: X\nkind: smoke\nformat: json\nfields: [{path: a, metric: battery_pct, unit: \"%\", scale: 0}]\n",
		"product: X\nkind: smoke\nformat: json\nfields: [{path: a, metric: battery_pct, unit: \"%\", active: [1]}]\n",
		"product: X\nkind: smoke\nformat: json\nplatforms: [huawei]\nfields: [{path: a, metric: smoke_alarm, unit: event}]\n",
		"product: X\nkind: electrical\nformat: json\nfields: [{path: a, metric: cable_temp_c, ch: 9, unit: °C}]\n",
	} {
		if _, err := ParseCodec("b.yaml", []byte(bad)); !errors.As(err, &le) {
			t.Errorf("accepted or unstructured error for %q: %v", bad, err)
		}
	}
}

func TestApplyJSONPaths(t *testing.T) {
	c, err := ParseCodec("p.yaml", []byte(`product: P
kind: smoke
format: json
fields:
  - {path: params.alarm.value, metric: smoke_alarm, unit: event}
  - {path: list.1, metric: battery_pct, unit: "%", scale: 0.5, add: 10}
  - {path: flags, bit: 2, metric: tamper, unit: event}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := Report{JSON: []byte(`{"params":{"alarm":{"value":true}},"list":[0,60],"flags":4}`)}
	if err := c.Apply(&r); err != nil {
		t.Fatal(err)
	}
	check(t, c, r.Values, []want{{"smoke_alarm", 0, 1}, {"battery_pct", 0, 40}, {"tamper", 0, 1}})
	r = Report{JSON: []byte(`{"params":{"alarm":null},"list":[0],"flags":2.5}`)}
	err = c.Apply(&r)
	if !errors.Is(err, ErrCodec) || !strings.Contains(err.Error(), "bit 2") {
		t.Errorf("%v", err)
	}
}

func TestReason(t *testing.T) {
	if Reason(errors.New("x")) != "other" || Reason(ErrSignature) != "signature" || Reason(errors.Join(errors.New("a"), ErrCodec)) != "codec" {
		t.Error("reason")
	}
}

func FuzzParseCodec(f *testing.F) {
	files, _ := filepath.Glob("maps/*.yaml")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b, []byte{0xAA, 0x01, 0x01, 0x00, 0x5A, 0xFF, 0xA6, 0x00, 0x08})
	}
	f.Fuzz(func(t *testing.T, src, payload []byte) {
		c, err := ParseCodec("f.yaml", src)
		if err != nil {
			var le *devices.LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("unstructured error %v", err)
			}
			return
		}
		r := Report{Payload: payload, JSON: []byte(`{"a":1}`)}
		if c.Format == FormatBinary {
			r.JSON = nil
		}
		_ = c.Apply(&r) // must not panic
		for _, v := range r.Values {
			if v.Metric.Info().Kind != c.Kind {
				t.Fatalf("value of another kind: %+v", v)
			}
		}
	})
}

func FuzzApply(f *testing.F) {
	f.Add([]byte{0xAA, 0x01, 0x01, 0x00, 0x5A, 0xFF, 0xA6, 0x00, 0x08}, []byte(`{"Alarm_Status":1}`))
	f.Add([]byte{0x68, 0x02}, []byte(`{"Alarm_Status":[1]}`))
	cs, err := ShippedCodecs()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload, js []byte) {
		for _, c := range cs {
			r := Report{Payload: payload, JSON: js}
			if c.Format == FormatJSON {
				r.Payload = nil
			} else {
				r.JSON = nil
			}
			_ = c.Apply(&r)
			for _, v := range r.Values {
				if v.Metric.Info().Event && v.Value != 0 && v.Value != 1 {
					t.Fatalf("event %s = %v", v.Metric.Info().Name, v.Value)
				}
			}
		}
	})
}

func BenchmarkApplyJSON(b *testing.B) {
	c := shippedCodec(b, "NB-SMOKE-TM")
	js, _ := os.ReadFile("testdata/smoke_tm_alarm.json")
	r := Report{JSON: js, Values: make([]Value, 0, 16)}
	b.ReportAllocs()
	for b.Loop() {
		r.Values = r.Values[:0]
		if err := c.Apply(&r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyBinary(b *testing.B) {
	c := shippedCodec(b, "NB-EFM")
	r := Report{Payload: readHex(b, "efm_frame.hex"), Values: make([]Value, 0, 16)}
	b.ReportAllocs()
	for b.Loop() {
		r.Values = r.Values[:0]
		if err := c.Apply(&r); err != nil {
			b.Fatal(err)
		}
	}
}
