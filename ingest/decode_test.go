package ingest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

func testLedger(t testing.TB) *devices.Ledger {
	t.Helper()
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

const now = int64(1_795_420_800_000)

func TestDecodeAccepts(t *testing.T) {
	type val struct {
		metric string
		v      float64
	}
	tests := []struct {
		name, topic, payload string
		device               string
		time                 int64
		seq                  uint32
		ch                   uint8
		want                 []val
	}{
		{"telemetry", "fw/v1/up/el-1/telemetry", `{"ts":1795420800123,"seq":42,"m":{"residual_current_ma":132.5,"voltage_v":221.4}}`,
			"el-1", 1795420800123, 42, 0, []val{{"residual_current_ma", 132.5}, {"voltage_v", 221.4}}},
		{"channel and whitespace", "fw/v1/up/ch-1/telemetry", " {\n\"ch\" : 3 ,\"m\":{\"slot_temp_c\":41.2e0, \"slot_power_w\":460}, \"ts\":5}\t",
			"ch-1", 5, 0, 3, []val{{"slot_temp_c", 41.2}, {"slot_power_w", 460}}},
		{"missing ts uses receive time", "fw/v1/up/sm-1/status", `{"m":{"battery_pct":87,"rssi_dbm":-91}}`,
			"sm-1", now, 0, 0, []val{{"battery_pct", 87}, {"rssi_dbm", -91}}},
		{"event", "fw/v1/up/sm-1/event", `{"ts":9,"seq":4294967295,"event":"smoke_alarm"}`, "sm-1", 9, 4294967295, 0, []val{{"smoke_alarm", 1}}},
		{"event ended", "fw/v1/up/sm-1/event", `{"ts":9,"event":"smoke_alarm","active":false}`, "sm-1", 9, 0, 0, []val{{"smoke_alarm", 0}}},
		{"unknown keys are skipped", "fw/v1/up/hy-1/telemetry", `{"fw":"1.2","x":[1,{"a":null,"b":[true,false]}],"m":{"pressure_mpa":0.31},"note":"\u6c34\"\\"}`,
			"hy-1", now, 0, 0, []val{{"pressure_mpa", 0.31}}},
		{"escaped key", "fw/v1/up/hy-1/telemetry", `{"m":{"pressure\u005fmpa":0.2}}`, "hy-1", now, 0, 0, []val{{"pressure_mpa", 0.2}}},
		{"empty heartbeat", "fw/v1/up/sm-1/status", `{"ts":7}`, "sm-1", 7, 0, 0, nil},
	}
	l := testLedger(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(l)
			msgs, rejects := d.Decode(tt.topic, []byte(tt.payload), now)
			if len(rejects) != 0 || len(msgs) != 1 {
				t.Fatalf("got %d messages, rejects %v", len(msgs), rejects)
			}
			m := &msgs[0]
			if m.Device.ID != tt.device || m.Time != tt.time || m.Seq != tt.seq || m.Channel != tt.ch {
				t.Fatalf("message %+v", *m)
			}
			metrics, values := d.Values(m)
			if len(metrics) != len(tt.want) {
				t.Fatalf("%d values, want %d", len(metrics), len(tt.want))
			}
			for i, w := range tt.want {
				if metrics[i].String() != w.metric || values[i] != w.v {
					t.Errorf("value %d = %s %g, want %s %g", i, metrics[i], values[i], w.metric, w.v)
				}
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, topic, payload string
		reason               Reason
		msg                  string
	}{
		{"foreign topic", "home/kitchen/temp", `{}`, ReasonBadTopic, "is not fw/v1/up"},
		{"bad leaf", "fw/v1/up/el-1/selfie", `{}`, ReasonBadTopic, ""},
		{"bad gateway leaf", "fw/v1/up/gw/gw-1/selfie", `{}`, ReasonBadTopic, ""},
		{"gateway without id", "fw/v1/up/gw//batch", `{}`, ReasonBadTopic, ""},
		{"unknown device", "fw/v1/up/ghost/telemetry", `{"m":{"x":1}}`, ReasonUnknownDevice, "unknown device"},
		{"not json", "fw/v1/up/el-1/telemetry", `residual=3`, ReasonMalformed, "not a JSON object"},
		{"truncated", "fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":1`, ReasonMalformed, "invalid JSON"},
		{"trailing", "fw/v1/up/el-1/telemetry", `{"m":{}} {}`, ReasonMalformed, "after the JSON"},
		{"string value", "fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":"12"}}`, ReasonMalformed, "not a number"},
		{"leading zero", "fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":012}}`, ReasonMalformed, "not a number"},
		{"float ts", "fw/v1/up/el-1/telemetry", `{"ts":1.5,"m":{}}`, ReasonMalformed, `"ts" must be`},
		{"negative seq", "fw/v1/up/el-1/telemetry", `{"seq":-1,"m":{}}`, ReasonMalformed, `"seq" must be`},
		{"channel 0", "fw/v1/up/ch-1/telemetry", `{"ch":0,"m":{"slot_temp_c":30}}`, ReasonMalformed, `"ch" must be`},
		{"channel beyond metric", "fw/v1/up/el-1/telemetry", `{"ch":2,"m":{"residual_current_ma":30}}`, ReasonMalformed, "has 1 channel(s), got ch 2"},
		{"duplicate metric", "fw/v1/up/el-1/telemetry", `{"m":{"voltage_v":220,"voltage_v":221}}`, ReasonMalformed, "given twice"},
		{"unknown metric", "fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":3,"temperature":30}}`, ReasonUnknownMetric, `electrical has no metric "temperature"`},
		{"other kind's metric", "fw/v1/up/sm-1/telemetry", `{"m":{"pressure_mpa":0.3}}`, ReasonUnknownMetric, "smoke has no metric"},
		{"unknown event", "fw/v1/up/sm-1/event", `{"event":"alien"}`, ReasonUnknownMetric, `smoke has no event "alien"`},
		{"metric as event", "fw/v1/up/sm-1/event", `{"event":"battery_pct"}`, ReasonUnknownMetric, "has no event"},
		{"NaN string", "fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":"NaN"}}`, ReasonNotFinite, "NaN or infinite"},
		{"overflow", "fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":1e999}}`, ReasonNotFinite, "NaN or infinite"},
		{"bare NaN", "fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":NaN}}`, ReasonMalformed, ""},
		{"absurd", "fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":-5}}`, ReasonOutOfRange, "outside 0…10000 mA"},
		{"absurd battery", "fw/v1/up/sm-1/status", `{"m":{"battery_pct":180}}`, ReasonOutOfRange, "battery_pct = 180"},
		{"too large", "fw/v1/up/el-1/telemetry", `{"x":"` + strings.Repeat("a", MaxPayload) + `"}`, ReasonTooLarge, "exceeds"},
		{"deep", "fw/v1/up/el-1/telemetry", `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, ReasonMalformed, "too deep"},
		{"bad utf8", "fw/v1/up/el-1/telemetry", "{\"x\":\"\xff\"}", ReasonMalformed, "invalid JSON"},
		{"long key", "fw/v1/up/el-1/telemetry", `{"` + strings.Repeat("k", MaxString+1) + `":1}`, ReasonTooLong, "longer than 256"},
		{"long escaped value", "fw/v1/up/el-1/telemetry", `{"x":"\n` + strings.Repeat("v", MaxString) + `"}`, ReasonTooLong, "longer than 256"},
		{"long event", "fw/v1/up/sm-1/event", `{"event":"` + strings.Repeat("e", 300) + `"}`, ReasonTooLong, ""},
		{"ts overflow", "fw/v1/up/el-1/telemetry", `{"ts":92233720368547758070,"m":{"voltage_v":220}}`, ReasonMalformed, `"ts" must be`},
		{"unknown device in topic", "fw/v1/up/" + strings.Repeat("x", 200) + "/telemetry", `{}`, ReasonUnknownDevice, ""},
		{"gateway topic as device", "fw/v1/up/gw-1/telemetry", `{"m":{}}`, ReasonUnknownDevice, ""},
	}
	d := NewDecoder(testLedger(t))
	d.MaxFuture, d.MaxAge = DefaultMaxFuture, DefaultMaxAge
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, rejects := d.Decode(tt.topic, []byte(tt.payload), now)
			if len(msgs) != 0 || len(rejects) != 1 {
				t.Fatalf("got %d messages, rejects %v; want one rejection", len(msgs), rejects)
			}
			if r := rejects[0]; r.Reason != tt.reason || !strings.Contains(r.Error(), tt.msg) {
				t.Fatalf("reject = %q (%s), want reason %s containing %q", r.Error(), r.Reason, tt.reason, tt.msg)
			}
		})
	}
}

// A reading is never rejected for its ts (issue 22 #5, issue 21 #11): a ts
// that is not believed is replaced by the receive time and says why; a
// gateway's replay of a long outage keeps its ts.
func TestDecodeClock(t *testing.T) {
	const day = 24 * 3600 * 1000
	tests := []struct {
		name, topic, payload string
		clock                Clock
		time                 int64
	}{
		{"plausible", "fw/v1/up/el-1/telemetry", fmt.Sprintf(`{"ts":%d,"m":{"voltage_v":220}}`, now-5000), ClockDevice, now - 5000},
		{"no ts", "fw/v1/up/el-1/telemetry", `{"m":{"voltage_v":220}}`, ClockNone, now},
		{"ts in the future", "fw/v1/up/el-1/telemetry", fmt.Sprintf(`{"ts":%d,"m":{"voltage_v":220}}`, now+11*60*1000), ClockAhead, now},
		{"ts huge", "fw/v1/up/el-1/telemetry", `{"ts":9223372036854775807,"m":{"voltage_v":220}}`, ClockAhead, now},
		{"smoke alarm from a clock reset to 2000", "fw/v1/up/sm-1/event", `{"ts":946684800000,"seq":1,"event":"smoke_alarm"}`, ClockReset, now},
		{"ts of a second", "fw/v1/up/el-1/telemetry", `{"ts":1795420800,"m":{"voltage_v":220}}`, ClockReset, now},
		{"stale on the device's topic", "fw/v1/up/el-1/telemetry", fmt.Sprintf(`{"ts":%d,"m":{"voltage_v":220}}`, now-8*day), ClockStale, now},
		{"a gateway replaying an outage of 8 days", "fw/v1/up/gw/gw-1/batch", fmt.Sprintf(`{"readings":[{"dev":"el-1","ts":%d,"seq":3,"m":{"voltage_v":220}}]}`, now-8*day), ClockOld, now - 8*day},
		{"a gateway without a clock", "fw/v1/up/gw/gw-1/batch", `{"readings":[{"dev":"el-1","ts":1000,"seq":3,"m":{"voltage_v":220}}]}`, ClockReset, now},
	}
	l := testLedger(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(l)
			d.MaxFuture, d.MaxAge, d.MinTime = DefaultMaxFuture, DefaultMaxAge, DefaultMinTime
			msgs, rejects := d.Decode(tt.topic, []byte(tt.payload), now)
			if len(msgs) != 1 || len(rejects) != 0 {
				t.Fatalf("got %d messages, rejects %v; want the message", len(msgs), rejects)
			}
			if m := msgs[0]; m.Clock != tt.clock || m.Time != tt.time || m.Recv != now {
				t.Fatalf("clock %s time %d recv %d, want %s %d %d", m.Clock, m.Time, m.Recv, tt.clock, tt.time, now)
			}
		})
	}
}

// Readings without ts never share a time in InfluxDB (issue 21 #10): the
// receive clock ticks every 10 ms, so two readings of one device within a
// tick got the same time and the second overwrote the first.
func TestDecodeUniqueReceiveTime(t *testing.T) {
	d := NewDecoder(testLedger(t))
	var times []int64
	for range 3 {
		msgs, _ := d.Decode("fw/v1/up/el-1/telemetry", []byte(`{"m":{"voltage_v":220}}`), now)
		times = append(times, msgs[0].Time)
	}
	msgs, _ := d.Decode("fw/v1/up/sm-1/telemetry", []byte(`{"m":{"battery_pct":80}}`), now)
	if times[0] != now || times[1] != now+1 || times[2] != now+2 || msgs[0].Time != now {
		t.Fatalf("times %v and %d for another device, want %d, +1, +2 and %d", times, msgs[0].Time, now, now)
	}
	// The same message twice (a QoS 1 redelivery) has the same digest even
	// though its receive time differs; another value has another.
	a, _ := d.Decode("fw/v1/up/el-1/telemetry", []byte(`{"seq":5,"m":{"voltage_v":220}}`), now)
	da := a[0].Digest
	b, _ := d.Decode("fw/v1/up/el-1/telemetry", []byte(`{"seq":5, "m":{"voltage_v":220.0}}`), now+50)
	db := b[0].Digest
	c, _ := d.Decode("fw/v1/up/el-1/telemetry", []byte(`{"seq":5,"m":{"voltage_v":221}}`), now)
	if da != db || da == c[0].Digest {
		t.Fatalf("digests %x %x %x", da, db, c[0].Digest)
	}
}

func TestDecodeBatch(t *testing.T) {
	d := NewDecoder(testLedger(t))
	payload := `{"gw":"g1","readings":[
	  {"dev":"el-1","ts":10,"seq":7,"m":{"residual_current_ma":88}},
	  {"dev":"ghost","ts":11,"m":{"x":1}},
	  {"dev":"ch-1","ts":12,"seq":9,"ch":2,"m":{"slot_temp_c":38.5}},
	  {"dev":"hy-1","ts":13,"m":{"pressure_mpa":"NaN"}},
	  {"m":{"pressure_mpa":0.3}},
	  {"dev":"sm-1","ts":14,"seq":3,"event":"tamper"}
	]}`
	msgs, rejects := d.Decode("fw/v1/up/gw/gw-1/batch", []byte(payload), now)
	if len(msgs) != 3 {
		t.Fatalf("accepted %d elements, want 3", len(msgs))
	}
	wantDev := []string{"el-1", "ch-1", "sm-1"}
	wantVal := []float64{88, 38.5, 1}
	for i, m := range msgs {
		_, values := d.Values(&m)
		if m.Device.ID != wantDev[i] || len(values) != 1 || values[0] != wantVal[i] {
			t.Errorf("element %d: %s %v", i, m.Device.ID, values)
		}
	}
	if msgs[1].Channel != 2 || msgs[1].Seq != 9 {
		t.Errorf("ch-1 element: %+v", msgs[1])
	}
	wantReasons := []Reason{ReasonUnknownDevice, ReasonNotFinite, ReasonMalformed}
	if len(rejects) != len(wantReasons) {
		t.Fatalf("rejects %v, want reasons %v", rejects, wantReasons)
	}
	for i, r := range rejects {
		if r.Reason != wantReasons[i] {
			t.Errorf("reject %d: %v, want %s", i, r, wantReasons[i])
		}
	}

	msgs, rejects = d.Decode("fw/v1/up/gw/gw-1/batch", []byte(`{"readings":[{"dev":"el-1","m":{"voltage_v":220}},{"dev":`), now)
	// Elements before the break are whole and kept; the rest is one rejection.
	if len(msgs) != 1 || len(rejects) != 1 || rejects[0].Reason != ReasonMalformed {
		t.Fatalf("truncated batch: msgs %d, rejects %v; want 1 and one malformed", len(msgs), rejects)
	}
	if msgs, rejects = d.Decode("fw/v1/up/gw/gw-1/status", []byte(`{"online":false}`), now); len(msgs) != 0 || len(rejects) != 0 {
		t.Fatalf("gateway status: %d messages, rejects %v; want it accepted without readings", len(msgs), rejects)
	}
	if _, rejects = d.Decode("fw/v1/up/gw/gw-1/batch", []byte(`{"items":[]}`), now); len(rejects) != 1 {
		t.Fatalf("batch without readings: %v", rejects)
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	d := NewDecoder(testLedger(t))
	for _, c := range []struct{ topic, payload string }{
		{"fw/v1/up/el-1/telemetry", `{"ts":1795420800123,"seq":42,"m":{"residual_current_ma":132.5,"voltage_v":221.4,"cable_temp_c":40.25}}`},
		{"fw/v1/up/gw/gw-1/batch", `{"readings":[{"dev":"el-1","ts":10,"seq":7,"m":{"residual_current_ma":88}},{"dev":"sm-1","ts":14,"seq":3,"event":"tamper"}]}`},
	} {
		p := []byte(c.payload)
		allocs := testing.AllocsPerRun(200, func() {
			if msgs, rejects := d.Decode(c.topic, p, now); len(msgs) == 0 || len(rejects) != 0 {
				t.Fatal(rejects)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per Decode", c.topic, allocs)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"ts":1795420800123,"seq":42,"m":{"residual_current_ma":132.5,"voltage_v":221.4}}`,
		`{"ch":3,"m":{"slot_temp_c":41.2}}`,
		`{"event":"smoke_alarm","active":false}`,
		`{"readings":[{"dev":"el-1","m":{"residual_current_ma":88}},{"dev":"sm-1","event":"tamper"}]}`,
		`{"m":{"residual_current_ma":"NaN"}}`, `{"x":[[[{}]]]}`, `{"a":"\u00e9\n"}`,
	} {
		f.Add("fw/v1/up/el-1/telemetry", []byte(s))
		f.Add("fw/v1/up/gw/gw-1/batch", []byte(s))
	}
	l := testLedger(f)
	d := NewDecoder(l)
	d.MaxFuture, d.MaxAge = DefaultMaxFuture, DefaultMaxAge
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		msgs, rejects := d.Decode(topic, payload, now)
		for _, r := range rejects {
			if r.Err == nil || r.Reason >= numReasons {
				t.Fatalf("reject without reason or error: %+v", r)
			}
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Device == nil {
				t.Fatal("accepted a message without a device")
			}
			metrics, values := d.Values(m)
			for j, metric := range metrics {
				info := metric.Info()
				if info.Kind != m.Device.Kind || values[j] != values[j] || values[j] < info.Min || values[j] > info.Max {
					t.Fatalf("accepted %s=%g for a %s", metric, values[j], m.Device.Kind)
				}
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	d := NewDecoder(testLedger(b))
	for _, c := range []struct{ name, topic, payload string }{
		{"single", "fw/v1/up/el-1/telemetry", `{"ts":1795420800123,"seq":42,"m":{"residual_current_ma":132.5}}`},
		{"three", "fw/v1/up/el-1/telemetry", `{"ts":1795420800123,"seq":42,"m":{"residual_current_ma":132.5,"voltage_v":221.4,"cable_temp_c":40.25}}`},
		{"event", "fw/v1/up/sm-1/event", `{"ts":1795420800123,"seq":43,"event":"smoke_alarm","active":true}`},
		{"batch", "fw/v1/up/gw/gw-1/batch", `{"readings":[{"dev":"el-1","ts":1795420800123,"seq":1,"ch":2,"m":{"phase_current_a":71.5,"voltage_v":221}},` +
			`{"dev":"hy-1","ts":1795420800123,"seq":2,"m":{"pressure_mpa":0.31}},{"dev":"el-1","ts":1795420800124,"seq":3,"m":{"residual_current_ma":132.5}}]}`},
	} {
		p := []byte(c.payload)
		b.Run(c.name, func(b *testing.B) {
			if msgs, rejects := d.Decode(c.topic, p, now); len(msgs) == 0 || len(rejects) != 0 {
				b.Fatalf("%d messages, rejects %v", len(msgs), rejects)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				d.Decode(c.topic, p, now)
			}
		})
	}
}

// TestDecodeBatchLimits checks the spoofing check and the batch limits.
func TestDecodeBatchLimits(t *testing.T) {
	d := NewDecoder(testLedger(t))
	// gw-2 is no gateway of these devices: every element is spoofed, and
	// nothing is accepted.
	msgs, rejects := d.Decode("fw/v1/up/gw/gw-2/batch", []byte(`{"readings":[{"dev":"el-1","m":{"voltage_v":220}},{"dev":"sm-1","event":"smoke_alarm"}]}`), now)
	if len(msgs) != 0 || len(rejects) != 2 || rejects[0].Reason != ReasonSpoofed || rejects[1].Reason != ReasonSpoofed {
		t.Fatalf("spoofed batch: %d accepted, rejects %v", len(msgs), rejects)
	}
	// A batch longer than MaxReadings: the first MaxReadings are taken, the
	// rest is one too_many rejection.
	el := `{"dev":"hy-1","m":{"pressure_mpa":0.3}},`
	p := `{"readings":[` + strings.Repeat(el, MaxReadings+5) + el[:len(el)-1] + `]}`
	msgs, rejects = d.Decode("fw/v1/up/gw/gw-1/batch", []byte(p), now)
	if len(msgs) != MaxReadings || len(rejects) != 1 || rejects[0].Reason != ReasonTooMany {
		t.Fatalf("long batch: %d accepted, rejects %v", len(msgs), rejects)
	}
	// Disabled time bounds (the zero Decoder fields) accept any ts.
	if msgs, rejects = d.Decode("fw/v1/up/el-1/telemetry", []byte(`{"ts":5,"m":{"voltage_v":220}}`), now); len(msgs) != 1 {
		t.Fatalf("ts 5 without bounds: %v", rejects)
	}
}

// The scanner's integer parse agrees with strconv on every edge.
func TestScannerInt(t *testing.T) {
	for _, in := range []string{"0", "7", "-7", "42", "4294967295", "1795420800123", "9223372036854775807", "-9223372036854775807",
		"9223372036854775808", "99999999999999999999", "1.5", "1e3", "-", "01", "-0", ""} {
		var s scanner
		s.reset([]byte(in))
		got, err := s.int(math.MinInt64, math.MaxInt64)
		want, werr := strconv.ParseInt(in, 10, 64)
		digits := strings.TrimPrefix(in, "-")
		valid := werr == nil && (len(digits) < 2 || digits[0] != '0') // JSON: no leading zeros, -0 is fine
		if valid != (err == nil) || (valid && got != want) {
			t.Errorf("%q: got %d, %v; want %d, valid %v", in, got, err, want, valid)
		}
	}
}
