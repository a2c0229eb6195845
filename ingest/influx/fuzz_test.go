package influx

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// FuzzAppendLine checks that every line the encoder writes parses, with
// InfluxData's reference parser, back to the device's tags, the exact float
// values and the timestamp, and that it writes nothing when it must not.
func FuzzAppendLine(f *testing.F) {
	f.Add(uint8(0), uint8(0), 350.0, 0.1, int64(1795420800123))
	f.Add(uint8(1), uint8(3), 1e-7, -12.5, int64(0))
	f.Add(uint8(2), uint8(16), 1.5e21, math.MaxFloat64, int64(-1))
	f.Add(uint8(3), uint8(255), math.SmallestNonzeroFloat64, math.Copysign(0, -1), int64(9223372036854))
	f.Add(uint8(0), uint8(0), math.NaN(), math.Inf(1), int64(1))
	f.Add(uint8(9), uint8(0), 1.0, 2.0, int64(1))
	l := newTestLedger(f)
	e := NewEncoder(l)
	f.Fuzz(func(t *testing.T, dev, ch uint8, v1, v2 float64, ts int64) {
		d := devices.Index(dev)
		var ms []devices.Metric
		if int(d) < len(l.Devices) {
			ms = l.Devices[d].Kind.Metrics()[:2]
		} else {
			ms = []devices.Metric{1, 2}
		}
		vs := []float64{v1, v2}
		prefix := []byte("keep\n")
		out := e.AppendLine(prefix, d, ch, ms, vs, ts)
		if !bytes.HasPrefix(out, []byte("keep\n")) {
			t.Fatalf("prefix of buf changed: %q", out)
		}
		line := out[len(prefix):]
		finite := !isBad(v1) || !isBad(v2)
		if int(d) >= len(l.Devices) || !finite || ts > maxMillis || ts < -maxMillis {
			if len(line) != 0 {
				t.Fatalf("wrote %q, want nothing", line)
			}
			return
		}
		if bytes.Count(line, []byte{'\n'}) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("not exactly one line: %q", line)
		}
		p, err := parseLine(line)
		if err != nil {
			t.Fatalf("%v\n%s", err, line)
		}
		dv := &l.Devices[d]
		want := map[string]string{"device": dv.ID, "kind": dv.Kind.String(),
			"county": dv.Grid.County(), "town": dv.Grid.Town(), "village": dv.Grid.Village()}
		if ch != 0 {
			want["ch"] = strconv.Itoa(int(ch))
		}
		checkTags(t, p.tags, want)
		if p.name != dv.Kind.String() || p.ms != ts {
			t.Fatalf("measurement %q time %d, want %q %d", p.name, p.ms, dv.Kind, ts)
		}
		for i, m := range ms {
			got, ok := p.floats[m.String()]
			if isBad(vs[i]) {
				if ok {
					t.Fatalf("non-finite %v written as %v", vs[i], got)
				}
				continue
			}
			if !ok || math.Float64bits(got) != math.Float64bits(vs[i]) {
				t.Fatalf("%s = %v (present %v), want %v\n%s", m, got, ok, vs[i], line)
			}
		}
	})
}

// FuzzAppendAlarm checks escaping of the free-text parts of an alarm.
func FuzzAppendAlarm(f *testing.F) {
	f.Add("cable temp, high=80", "fire", "raised", "A-1", `柳南区 "线缆" 温度 C:\配电箱`+"\n第二行", 85.5, 80.0, int64(1795420800123))
	f.Add("", "", "", "", "", math.NaN(), math.Inf(-1), int64(0))
	f.Add(`\`, `a\`, "\"", `\"`, `\`, 0.0, -0.0, int64(-5))
	f.Add("#", " lead", "trail ", "=", "\r\n\t", 1e300, 1e-300, int64(1))
	l := newTestLedger(f)
	e := NewEncoder(l)
	f.Fuzz(func(t *testing.T, rule, severity, state, id, msg string, value, threshold float64, ts int64) {
		a := AlarmPoint{Device: 1, Rule: rule, Severity: severity, State: state, AlarmID: id,
			Message: msg, Value: value, Threshold: threshold, Time: ts}
		line := e.AppendAlarm(nil, a)
		if ts > maxMillis || ts < -maxMillis {
			if len(line) != 0 {
				t.Fatalf("wrote %q for time %d", line, ts)
			}
			return
		}
		if bytes.Count(line, []byte{'\n'}) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("not exactly one line: %q", line)
		}
		p, err := parseLine(line)
		if err != nil {
			t.Fatalf("%v\n%q", err, line)
		}
		if p.name != AlarmMeasurement || p.ms != ts {
			t.Fatalf("measurement %q time %d", p.name, p.ms)
		}
		dv := &l.Devices[1]
		want := map[string]string{"device": dv.ID, "kind": dv.Kind.String(),
			"county": dv.Grid.County(), "town": dv.Grid.Town(), "village": dv.Grid.Village()}
		for k, v := range map[string]string{"rule": rule, "severity": severity, "state": state} {
			if v != "" {
				want[k] = tagValue(v)
			}
		}
		checkTags(t, p.tags, want)
		if got := p.strings["alarm_id"]; got != stringValue(id) {
			t.Fatalf("alarm_id %q, want %q", got, stringValue(id))
		}
		if got := p.strings["message"]; !strings.HasPrefix(stringValue(msg), got) || len(got) > maxMessage ||
			len(msg) <= maxMessage && got != stringValue(msg) {
			t.Fatalf("message %q from %q", got, msg)
		}
		for k, v := range map[string]float64{"value": value, "threshold": threshold} {
			got, ok := p.floats[k]
			if ok == isBad(v) || ok && math.Float64bits(got) != math.Float64bits(v) {
				t.Fatalf("%s = %v (present %v), want %v", k, got, ok, v)
			}
		}
	})
}

func isBad(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }

// tagValue is what a tag value reads as after the encoder's replacements.
func tagValue(s string) string { return strings.ReplaceAll(stringValue(s), `\`, "/") }

// stringValue is what a string field reads as after the replacements.
func stringValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' {
			b[i] = ' '
		}
	}
	return string(b)
}

func checkTags(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("tags %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("tag %s = %q, want %q (all: %q)", k, got[k], v, got)
		}
	}
}
