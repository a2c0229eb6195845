package influx

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestEncoderGolden encodes a batch covering channels, float forms,
// skipped values and alarms, and compares it with testdata/encoder.golden.
func TestEncoderGolden(t *testing.T) {
	l := newTestLedger(t)
	e := NewEncoder(l)
	el, sm, ch := devices.Index(0), devices.Index(1), devices.Index(3)
	K := devices.KindElectrical
	rc, temp, volt := metric(t, K, "residual_current_ma"), metric(t, K, "cable_temp_c"), metric(t, K, "voltage_v")
	smoke := metric(t, devices.KindSmoke, "smoke_alarm")
	slot := metric(t, devices.KindCharger, "slot_temp_c")
	const ts = 1795420800123

	var buf []byte
	type M = []devices.Metric
	type V = []float64
	buf = e.AppendLine(buf, el, 0, M{rc, volt}, V{350, 221.4}, ts)
	buf = e.AppendLine(buf, el, 3, M{temp}, V{0.1}, ts+1)
	buf = e.AppendLine(buf, el, 16, M{temp}, V{-12.5}, ts+2)
	buf = e.AppendLine(buf, el, 0, M{rc, volt}, V{1e-7, 1.5e21}, ts+3)
	buf = e.AppendLine(buf, el, 0, M{rc, volt}, V{123456789.125, math.Copysign(0, -1)}, ts+4)
	buf = e.AppendLine(buf, el, 0, M{rc, volt, temp}, V{math.NaN(), 5, math.Inf(1)}, ts+5)
	buf = e.AppendLine(buf, el, 0, M{rc}, V{math.Inf(-1)}, ts+6) // nothing left: no line
	buf = e.AppendLine(buf, el, 0, M{rc, volt}, V{1}, ts+7)      // values shorter: one field
	buf = e.AppendLine(buf, 99, 0, M{rc}, V{1}, ts+8)            // unknown device: no line
	buf = e.AppendLine(buf, el, 0, M{rc}, V{1}, 9223372036855)   // beyond year 2262: no line
	buf = e.AppendLine(buf, sm, 0, M{smoke}, V{1}, -1)
	buf = e.AppendLine(buf, ch, 7, M{slot}, V{41.2}, ts+9)
	buf = e.AppendAlarm(buf, AlarmPoint{
		Device: el, Rule: "cable temp, high=80", Severity: "fire", State: "raised",
		Value: 85.5, Threshold: 80, AlarmID: "A-1",
		Message: "柳南区 \"线缆\" 温度 85.5 °C\nC:\\配电箱, 3 号", Time: ts + 10,
	})
	buf = e.AppendAlarm(buf, AlarmPoint{Device: sm, Rule: "smoke", State: "cleared",
		Value: math.NaN(), Threshold: math.Inf(1), Time: ts + 11})
	buf = e.AppendAlarm(buf, AlarmPoint{Device: 99, Rule: "x"}) // unknown device: no line
	yes, no := true, false
	nan := math.NaN()
	buf = e.AppendResponse(buf, ResponsePoint{Device: el, Station: "st-tanxi", Rule: "electrical.residual_current.alarm",
		Severity: "alarm", Outcome: "resolved", AlarmID: "alm-000001",
		Seconds:         [NumResponseFields]float64{1.5, 0.25, nan, 75, 80, 170, 900},
		RespondedInTime: &no, ArrivedInTime: &yes, Time: ts + 12})
	buf = e.AppendResponse(buf, ResponsePoint{Device: sm, Station: "st-tanxi", Rule: "smoke", Severity: "fire",
		Outcome: "false_alarm", AlarmID: "alm-000002", Seconds: [NumResponseFields]float64{0, 0.1, nan, nan, nan, nan, 30},
		Time: ts + 13})
	buf = e.AppendResponse(buf, ResponsePoint{Device: 99, Time: ts}) // unknown device: no line

	golden := filepath.Join("testdata", "encoder.golden")
	if *update {
		if err := os.WriteFile(golden, buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(buf) != string(want) {
		t.Errorf("encoded batch differs from %s:\n got:\n%s\nwant:\n%s", golden, buf, want)
	}
	for i, line := range strings.Split(strings.TrimSuffix(string(buf), "\n"), "\n") {
		if _, err := parseLine([]byte(line + "\n")); err != nil {
			t.Errorf("line %d does not parse: %v\n%s", i+1, err, line)
		}
	}
}

func TestAppendKeyEscaping(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a b", `a\ b`},
		{"a,b", `a\,b`},
		{"a=b", `a\=b`},
		{"a\nb\rc", `a\ b\ c`},
		{`C:\dir\`, "C:/dir/"},
		{"柳南区", "柳南区"},
	} {
		if got := string(appendKey(nil, c.in)); got != c.want {
			t.Errorf("appendKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := string(appendName(nil, "a b,c=d")); got != `a\ b\,c=d` {
		t.Errorf("appendName = %q", got)
	}
	if got := string(appendString(nil, `say "hi" \ bye`+"\r\n")); got != `"say \"hi\" \\ bye  "` {
		t.Errorf("appendString = %q", got)
	}
	if got := string(appendTag([]byte("m"), "rule", "")); got != "m" {
		t.Errorf("empty tag value written: %q", got)
	}
}

func TestAlarmMessageTruncated(t *testing.T) {
	e := NewEncoder(newTestLedger(t))
	msg := strings.Repeat("火", maxMessage) // 3 bytes each
	line := e.AppendAlarm(nil, AlarmPoint{Device: 0, Message: msg, Time: 1})
	p, err := parseLine(line)
	if err != nil {
		t.Fatal(err)
	}
	got := p.strings["message"]
	if len(got) > maxMessage || len(got) < maxMessage-3 || !strings.HasPrefix(msg, got) {
		t.Errorf("message of %d bytes truncated to %d bytes, not at a rune boundary below %d", len(msg), len(got), maxMessage)
	}
}

func BenchmarkAppendLine(b *testing.B) {
	l := newTestLedger(b)
	e := NewEncoder(l)
	K := devices.KindElectrical
	metrics := []devices.Metric{metric(b, K, "residual_current_ma"), metric(b, K, "voltage_v"), metric(b, K, "phase_current_a"), metric(b, K, "rssi_dbm")}
	values := []float64{132.5, 221.4, 18.25, -91}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = e.AppendLine(buf[:0], 0, uint8(i&3), metrics, values, 1795420800123+int64(i))
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendAlarm(b *testing.B) {
	e := NewEncoder(newTestLedger(b))
	a := AlarmPoint{Device: 0, Rule: "cable_temp_high", Severity: "fire", State: "raised", Value: 85.5,
		Threshold: 80, AlarmID: "01HF7ZQ3", Message: "柳南区南站街道 电气火灾监控探测器 el-0001 线缆温度 85.5 °C", Time: 1795420800123}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendAlarm(buf[:0], a)
	}
}
