package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Take acknowledges a message only after it was handled and the alarm
// manager synced.
func TestTakeAcksAfterHandling(t *testing.T) {
	p, lines, _, _ := newTestPipeline(t)
	a := &fakeAlarms{}
	p.alarms = a
	acked := false
	p.Take(Message{Origin: "test", Topic: "fw/v1/up/el-1/telemetry", Payload: []byte(`{"ts":1000,"seq":1,"m":{"residual_current_ma":20}}`),
		Ack: func() {
			acked = true
			if len(lines.b) == 0 || a.syncs != 1 {
				t.Errorf("acknowledged before the readings were written (%q) or the alarms synced (%d)", lines.b, a.syncs)
			}
		}})
	if !acked {
		t.Fatal("Ack was not called")
	}
}

// Handle may be called from several goroutines at once (a TCP protocol
// server's connections); every reading is counted once (run with -race).
func TestHandleConcurrent(t *testing.T) {
	p, _, _, stats := newTestPipeline(t)
	p.alarms = &syncAlarms{}
	var wg sync.WaitGroup
	devs := []string{"el-1", "hy-1", "sm-1"}
	for g, dev := range devs {
		wg.Go(func() {
			h := Handler(p, Origin(fmt.Sprint("conn-", g)))
			metric := map[string]string{"el-1": "residual_current_ma", "hy-1": "pressure_mpa", "sm-1": "battery_pct"}[dev]
			for i := 1; i <= 200; i++ {
				h("fw/v1/up/"+dev+"/telemetry", fmt.Appendf(nil, `{"ts":%d,"seq":%d,"m":{"%s":1}}`, 1000+i, i, metric))
			}
		})
	}
	wg.Wait()
	if n := testutil.ToFloat64(stats.Readings); n != 600 {
		t.Fatalf("%v readings counted, want 600", n)
	}
}

// syncAlarms is fakeAlarms safe for concurrent use.
type syncAlarms struct {
	mu sync.Mutex
	fakeAlarms
}

func (s *syncAlarms) Sync() error { s.mu.Lock(); s.syncs++; s.mu.Unlock(); return nil }

// The adapter path of a source allocates nothing beyond the hot path.
func TestHandlerAllocs(t *testing.T) {
	p, lines, _, _ := newTestPipeline(t)
	p.alarms = &fakeAlarms{}
	h := Handler(p, OriginBroker)
	payload := []byte(`{"ts":1000,"seq":1,"m":{"residual_current_ma":20}}`)
	h("fw/v1/up/el-1/telemetry", payload) // warm up: the device's state
	seq := 1
	allocs := testing.AllocsPerRun(200, func() {
		seq++
		lines.b = lines.b[:0]
		payload = append(strconv.AppendInt(append(payload[:0], `{"ts":`...), int64(1000+seq), 10), `,"seq":`...)
		payload = append(strconv.AppendInt(payload, int64(seq), 10), `,"m":{"residual_current_ma":20}}`...)
		h("fw/v1/up/el-1/telemetry", payload)
	})
	if allocs > 0 {
		t.Errorf("%v allocations per message through Handler", allocs)
	}
}

// BenchmarkHandle is BenchmarkPipeline/single through the entry point every
// source uses (Handler → Take → Handle: topic routing, the hot path, and the
// alarm manager's Sync, here a no-op).
func BenchmarkHandle(b *testing.B) {
	p, lines, _, stats := newTestPipeline(b)
	p.alarms = &fakeAlarms{}
	h := Handler(p, OriginBroker)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.clock.run(ctx) // as the service runs it
	payload := make([]byte, 0, 256)
	ts := time.Now().Add(-time.Hour).UnixMilli()
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		payload = append(strconv.AppendInt(append(payload[:0], `{"ts":`...), ts+int64(n), 10), `,"seq":`...)
		payload = append(strconv.AppendInt(payload, int64(n), 10), `,"m":{"residual_current_ma":132.5}}`...)
		lines.b = lines.b[:0]
		h("fw/v1/up/el-1/telemetry", payload)
	}
	if got := testutil.ToFloat64(stats.Readings); got != float64(n) {
		b.Fatalf("%v readings accepted of %d sent", got, n)
	}
}
