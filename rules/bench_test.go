package rules

import (
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// BenchmarkEval evaluates one reading through the default rules, per kind.
func BenchmarkEval(b *testing.B) {
	set, err := Defaults()
	if err != nil {
		b.Fatal(err)
	}
	l := testLedger(b)
	cases := []struct{ device, metric string }{
		{"el-1", "residual_current_ma"},
		{"el-1", "cable_temp_c"},
		{"sm-1", "battery_pct"},
		{"hy-1", "pressure_mpa"},
		{"ch-1", "slot_temp_c"},
	}
	for _, c := range cases {
		b.Run(c.device[:2]+"/"+c.metric, func(b *testing.B) {
			e, err := NewEngine(set, l)
			if err != nil {
				b.Fatal(err)
			}
			d, _ := l.Lookup([]byte(c.device))
			m, _ := devices.MetricByName(d.Kind, c.metric)
			out := make([]Event, 0, 8)
			r := devices.Reading{Device: d.Index, Kind: d.Kind, Metric: m, Channel: 1, Value: 40}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r.Time = int64(i)
				out = e.Eval(r, out[:0])
			}
		})
	}
}
