package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

func TestShippedMaps(t *testing.T) {
	ms, err := ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	for model, kind := range map[string]devices.Kind{"ARCM300": devices.KindElectrical, "PT-100": devices.KindHydrant, "CC-10": devices.KindCharger} {
		m := ms[model]
		if m == nil || m.Kind != kind {
			t.Fatalf("shipped map %s missing or of the wrong kind", model)
		}
		// Every point lies in exactly one block, within its range.
		seen := map[int]bool{}
		for _, b := range m.Blocks {
			for _, i := range b.Points {
				p := &m.Points[i]
				if seen[i] || p.Function != b.Function || p.Address < b.Address || int(p.Address)+p.Type.Words() > int(b.Address)+int(b.Count) {
					t.Errorf("%s: point %s ch %d badly blocked", model, p.Metric, p.Ch)
				}
				seen[i] = true
			}
		}
		if len(seen) != len(m.Points) {
			t.Errorf("%s: %d of %d points in blocks", model, len(seen), len(m.Points))
		}
	}
	if _, ok := ms["CC-10"].Commands["cut_power"]; !ok {
		t.Error("CC-10 has no cut_power")
	}
}

func TestParseMapErrors(t *testing.T) {
	src := `model: X
kind: electrical
registers:
  - {metric: residual_current_ma, function: 4, address: 0, type: uint16, unit: A}
  - {metric: cable_temp_c, ch: 9, function: 4, address: 1, type: int16, scale: 0.1, unit: °C}
  - {metric: pressure_mpa, function: 3, address: 2, type: float32, unit: MPa}
  - {metric: voltage_v, ch: 1, function: 2, address: 3, type: uint16, unit: V}
  - {metric: voltage_v, ch: 2, function: 7, address: 3, type: uint16, unit: V}
  - {metric: voltage_v, ch: 3, function: 4, address: 4, type: int64, unit: V}
  - {metric: voltage_v, ch: 1, function: 4, address: 5, type: uint16, unit: V, word_order: middle}
  - {metric: fault, function: 4, address: 6, type: float32, unit: event}
  - {metric: phase_current_a, ch: 1, function: 4, address: 7, type: uint16, unit: A, scale: 0}
commands:
  launch_rocket: {function: 5, address: 0}
  cut_power: {function: 3, address: 0}
`
	_, err := ParseMap("bad.yaml", []byte(src))
	var le *devices.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want a LoadError", err)
	}
	want := []struct {
		line int
		has  string
	}{
		{4, `unit "A", but the catalog's unit is "mA"`},
		{5, "ch 9 outside 1…"},
		{6, `"pressure_mpa" is not in the catalog for kind electrical`},
		{7, "reads bits: type must be bool"},
		{8, "function 7"},
		{9, `type "int64"`},
		{10, "already mapped at line 7"},
		{10, `word_order "middle"`},
		{11, "is an event"},
		{12, "scale must be"},
		{14, `command "launch_rocket"`},
		{15, "function 3: use 5"},
	}
	msg := err.Error()
	for _, w := range want {
		found := false
		for _, p := range le.Problems {
			if p.Line == w.line && strings.Contains(p.Reason, w.has) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at line %d containing %q in:\n%s", w.line, w.has, msg)
		}
	}
}

func TestDecodeTypes(t *testing.T) {
	cases := []struct {
		p    Point
		regs []byte
		want float64
	}{
		{Point{Type: TypeInt16, Scale: 0.1}, []byte{0xFF, 0xD3}, -4.5},
		{Point{Type: TypeUint16, Scale: 1}, []byte{0xFF, 0xD3}, 65491},
		{Point{Type: TypeInt32, Scale: 1}, []byte{0xFF, 0xFF, 0xFF, 0xFE}, -2},
		{Point{Type: TypeInt32, Scale: 1, LowWordFirst: true}, []byte{0xFF, 0xFE, 0xFF, 0xFF}, -2},
		{Point{Type: TypeUint32, Scale: 0.01}, []byte{0x00, 0x01, 0x00, 0x00}, 655.36},
		{Point{Type: TypeUint32, Scale: 0.01, LowWordFirst: true}, []byte{0x00, 0x00, 0x00, 0x01}, 655.36},
		{Point{Type: TypeFloat32, Scale: 1}, []byte{0x3E, 0x9E, 0xB8, 0x52}, 0.31},
		{Point{Type: TypeFloat32, Scale: 1, LowWordFirst: true}, []byte{0xB8, 0x52, 0x3E, 0x9E}, 0.31},
		{Point{Type: TypeUint16, Scale: 0.1, Offset: -40}, []byte{0x01, 0x90}, 0},
	}
	for i, c := range cases {
		c.p.Function = 3
		c.p.Metric = 2 // cable_temp_c: not an event
		b := Block{Function: 3}
		got := c.p.Decode(&b, c.regs)
		if d := got - c.want; d > 1e-9 || d < -1e-9 {
			t.Errorf("case %d: Decode = %v, want %v", i, got, c.want)
		}
		// Encode is the inverse.
		var back []byte
		for _, r := range c.p.Encode(c.want) {
			back = append(back, byte(r>>8), byte(r))
		}
		if string(back) != string(c.regs) {
			t.Errorf("case %d: Encode(%v) = % x, want % x", i, c.want, back, c.regs)
		}
	}
}

// TestSentinelAndMask: a declared sentinel and a float NaN decode as absent,
// the mask keeps its bits after the sentinel check, and bad declarations
// are load errors.
func TestSentinelAndMask(t *testing.T) {
	m, err := ParseMap("s.yaml", []byte(`model: S
kind: hydrant
registers:
  - {metric: battery_pct, function: 3, address: 0, type: int16, unit: "%", sentinel: [0x7FFF, 0xFFFF]}
  - {metric: tilt, function: 3, address: 1, type: uint16, unit: event, mask: 0x0001, sentinel: [0xFFFF]}
  - {metric: pressure_mpa, function: 3, address: 2, type: float32, unit: MPa}
`))
	if err != nil {
		t.Fatal(err)
	}
	blk := &m.Blocks[0]
	decode := func(regs ...uint16) []float64 {
		data := make([]byte, 0, 8)
		for _, r := range regs {
			data = append(data, byte(r>>8), byte(r))
		}
		out := make([]float64, len(m.Points))
		for i := range m.Points {
			out[i] = m.Points[i].Decode(blk, data)
		}
		return out
	}
	nan := uint16(0x7FC0)
	v := decode(0x7FFF, 0xFFFF, nan, 0)
	if !Absent(v[0]) || !Absent(v[1]) || !Absent(v[2]) {
		t.Errorf("sentinels decoded as %v", v)
	}
	v = decode(0xFFFE, 0x0100, 0x3E9E, 0xB852)
	if v[0] != -2 || v[1] != 0 || Absent(v[2]) {
		t.Errorf("values decoded as %v, want -2, tilt inactive (bit 8 masked), a pressure", v)
	}
	if v = decode(50, 0x0101, 0, 0); v[1] != 1 {
		t.Errorf("tilt bit 0: %v", v[1])
	}
	_, err = ParseMap("bad.yaml", []byte(`model: B
kind: hydrant
registers:
  - {metric: battery_pct, function: 3, address: 0, type: uint16, unit: "%", sentinel: [70000]}
  - {metric: pressure_mpa, function: 3, address: 1, type: float32, unit: MPa, sentinel: [1]}
  - {metric: tilt, function: 3, address: 3, type: uint16, unit: event, mask: 0}
`))
	for _, w := range []string{"sentinel 70000", "sentinel is for integer", "mask 0"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}
