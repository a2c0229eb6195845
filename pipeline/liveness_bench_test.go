package pipeline

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// BenchmarkPipelineLive is BenchmarkPipeline with liveness and edge faults
// wired as New wires them (issue 14: what a reading's sighting costs): a
// device's own message, and a gateway batch of ten readings.
func BenchmarkPipelineLive(b *testing.B) {
	for _, c := range []struct{ name, topic string }{
		{"single", "fw/v1/up/el-1/telemetry"},
		{"batch10", "fw/v1/up/gw/gw-1/batch"},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, lines, events, _ := newTestPipeline(b)
			ef := newEdgeFaults(p.ledger, events, newLivenessAlarms(p.ledger, events), discardLogger())
			live, err := newLiveness(DefaultLiveness(), p.ledger, ef, time.Now().UnixMilli(), nil)
			if err != nil {
				b.Fatal(err)
			}
			ef.live, p.live, p.edge = live, live, ef
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go p.clock.run(ctx)
			devs := []string{"el-1", "hy-1", "el-1", "hy-1", "el-1", "hy-1", "el-1", "hy-1", "el-1", "hy-1"}
			metric := map[string]string{"el-1": `"residual_current_ma":88`, "hy-1": `"pressure_mpa":0.31`}
			payload := make([]byte, 0, 4096)
			ts := time.Now().Add(-time.Hour).UnixMilli()
			seq := 0
			b.ReportAllocs()
			for b.Loop() {
				ts++
				payload = payload[:0]
				if c.name == "single" {
					seq++
					payload = strconv.AppendInt(append(payload, `{"ts":`...), ts, 10)
					payload = strconv.AppendInt(append(payload, `,"seq":`...), int64(seq), 10)
					payload = append(payload, `,"m":{"residual_current_ma":132.5}}`...)
				} else {
					payload = append(payload, `{"readings":[`...)
					for k, d := range devs {
						if k > 0 {
							payload = append(payload, ',')
						}
						seq++
						payload = append(append(append(payload, `{"dev":"`...), d...), `","ts":`...)
						payload = strconv.AppendInt(payload, ts, 10)
						payload = strconv.AppendInt(append(payload, `,"seq":`...), int64(seq), 10)
						payload = append(append(append(payload, `,"m":{`...), metric[d]...), "}}"...)
					}
					payload = append(payload, "]}"...)
				}
				lines.b = lines.b[:0]
				p.handle(c.topic, payload)
			}
		})
	}
}
