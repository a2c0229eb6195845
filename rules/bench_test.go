package rules

import (
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
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
			done := testenv.CPUMetric(b)
			for i := 0; b.Loop(); i++ {
				r.Time, r.Seq = int64(i), uint32(i)
				out = e.Eval(r, e.Admit(r.Device, r.Time, r.Seq, true), out[:0])
			}
			done(b.N, "op")
		})
	}
}

// fleet returns a ledger of n devices, the four kinds in turn. Only the
// fields the engine reads are set.
func fleet(n int) *devices.Ledger {
	l := &devices.Ledger{Devices: make([]devices.Device, n)}
	for i := range l.Devices {
		l.Devices[i] = devices.Device{Index: devices.Index(i), Kind: devices.Kind(1 + i%4)}
	}
	return l
}

// BenchmarkEvalMixed evaluates a stream of 1,000,000 readings across
// 100,000 devices of all kinds and every metric of the catalog, with values
// that sometimes cross thresholds. Every pass replays the same times: after
// the first, the readings are late (only event rules see them).
func BenchmarkEvalMixed(b *testing.B) { benchMixed(b, false, false) }

// BenchmarkEvalMixedFresh is BenchmarkEvalMixed with the stream's times
// moved forward on every pass, so that every reading is fresh and seen by
// every rule: the common path.
func BenchmarkEvalMixedFresh(b *testing.B) { benchMixed(b, true, false) }

// BenchmarkEvalMixedSeq is BenchmarkEvalMixedFresh with a seq on every
// message, the next of its device's (as devices send them): the seq window
// and digests are touched too.
func BenchmarkEvalMixedSeq(b *testing.B) { benchMixed(b, true, true) }

func benchMixed(b *testing.B, fresh, seq bool) {
	set, err := Defaults()
	if err != nil {
		b.Fatal(err)
	}
	const nDev, nReadings = 100_000, 1_000_000
	l := fleet(nDev)
	e, err := NewEngine(set, l)
	if err != nil {
		b.Fatal(err)
	}
	stream := make([]devices.Reading, nReadings)
	count := make([]uint32, nDev) // messages per device in the stream
	rng := uint64(1)
	next := func() uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
	for i := range stream {
		d := &l.Devices[next()%nDev]
		ms := d.Kind.Metrics()
		m := ms[next()%uint64(len(ms))]
		info := m.Info()
		v := info.Min + float64(next()%1000)/1000*(info.Max-info.Min)/4
		count[d.Index]++
		stream[i] = devices.Reading{Device: d.Index, Kind: d.Kind, Metric: m, Channel: uint8(next() % uint64(info.Channels+1)), Value: v, Time: int64(i) * 10, Seq: count[d.Index]}
	}
	out := make([]Event, 0, 16)
	b.ReportAllocs()
	done := testenv.CPUMetric(b)
	b.ResetTimer()
	var shift int64
	var pass uint32
	for b.Loop() {
		for _, r := range stream {
			r.Time += shift
			if seq {
				r.Seq += pass * count[r.Device]
			}
			out = e.Eval(r, e.Admit(r.Device, r.Time, r.Seq, seq), out[:0])
		}
		if fresh {
			shift += nReadings * 10
		}
		pass++
	}
	done(b.N*nReadings, "reading")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nReadings), "ns/reading")
}

// BenchmarkEngineMemory reports the engine's state memory per device with
// the default rules, for 1,000,000 devices of each kind and mixed.
func BenchmarkEngineMemory(b *testing.B) {
	set, err := Defaults()
	if err != nil {
		b.Fatal(err)
	}
	const n = 1_000_000
	for k := devices.KindInvalid; k < devices.NumKinds; k++ {
		name := "mixed"
		l := fleet(n)
		if k != devices.KindInvalid {
			name = k.String()
			for i := range l.Devices {
				l.Devices[i].Kind = k
			}
		}
		b.Run(name, func(b *testing.B) {
			var e *Engine
			for b.Loop() {
				if e, err = NewEngine(set, l); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(e.StateBytes())/n, "bytes/device")
			b.ReportMetric(float64(e.StateBytes())/(1<<20), "MiB/1M-devices")
		})
	}
}
