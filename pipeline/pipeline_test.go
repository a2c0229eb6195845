package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/rules"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeLines struct{ b []byte }

func (f *fakeLines) Write(lines []byte) { f.b = append(f.b, lines...) }

type fakeEvents struct{ evs []rules.Event }

func (f *fakeEvents) Submit(ev rules.Event) { f.evs = append(f.evs, ev) }

func newTestPipeline(t testing.TB) (*Pipeline, *fakeLines, *fakeEvents, *ingest.Stats) {
	t.Helper()
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Defaults()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rules.NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	lines, events := &fakeLines{}, &fakeEvents{}
	stats := ingest.NewStats(nil, discardLogger())
	p := newPipeline(l, eng, lines, events, stats, prometheus.NewRegistry())
	p.log = discardLogger()
	return p, lines, events, stats
}

func TestPipeline(t *testing.T) {
	p, lines, events, stats := newTestPipeline(t)
	p.handle("fw/v1/up/el-1/telemetry", []byte(`{"ts":1000,"seq":1,"m":{"residual_current_ma":350,"voltage_v":220}}`))
	p.handle("fw/v1/up/el-1/telemetry", []byte(`{"ts":12000,"seq":2,"m":{"residual_current_ma":351}}`))
	p.handle("fw/v1/up/sm-1/event", []byte(`{"ts":5000,"seq":1,"event":"smoke_alarm"}`))
	p.handle("fw/v1/up/sm-1/status", []byte(`{"ts":5000}`)) // bare heartbeat: no line
	p.handle("fw/v1/up/el-1/telemetry", []byte(`{"m":{"residual_current_ma":"NaN"}}`))

	want := "electrical,county=450204,device=el-1,kind=electrical,town=450204002,village=450204002003 residual_current_ma=350,voltage_v=220 1000\n" +
		"electrical,county=450204,device=el-1,kind=electrical,town=450204002,village=450204002003 residual_current_ma=351 12000\n" +
		"smoke,county=450204,device=sm-1,kind=smoke,town=450204002,village=450204002003 smoke_alarm=1 5000\n"
	if string(lines.b) != want {
		t.Errorf("line protocol:\n%s\nwant:\n%s", lines.b, want)
	}
	var ids []string
	for _, ev := range events.evs {
		ids = append(ids, ev.Rule.ID+":"+ev.Transition.String())
	}
	if got := strings.Join(ids, " "); got != "electrical.residual_current.alarm:raise smoke.smoke_alarm:raise" {
		t.Errorf("events: %s", got)
	}
	if n := testutil.ToFloat64(stats.Readings); n != 4 {
		t.Errorf("readings counted: %v, want 4", n)
	}
	if n := testutil.ToFloat64(stats.Messages); n != 5 {
		t.Errorf("messages counted: %v, want 5", n)
	}
}

// BenchmarkPipeline is the in-process hot path: decode + evaluate + encode
// line protocol, per message of one reading and per gateway batch of ten.
// Every message is new (ts and seq advance), as in a real stream: a
// repeated one would be dropped as a duplicate, and the benchmark fails
// unless every reading was accepted. Writing ts and seq into the payload
// is part of the measured time (a few percent of it).
func BenchmarkPipeline(b *testing.B) {
	type elem struct{ dev, ch, m string }
	batch := []elem{
		{"hy-1", "", `"pressure_mpa":0.31`}, {"hy-1", "", `"pressure_mpa":0.32`}, {"hy-1", "", `"pressure_mpa":0.30`},
		{"el-1", "", `"residual_current_ma":88`}, {"el-1", "", `"residual_current_ma":90`}, {"el-1", "", `"residual_current_ma":87`},
		{"sm-1", "", `"battery_pct":90`}, {"sm-1", "", `"battery_pct":90`},
		{"ch-1", `,"ch":3`, `"slot_temp_c":38.5`}, {"ch-1", `,"ch":4`, `"slot_temp_c":39.5`},
	}
	appendElem := func(buf []byte, e elem, dev bool, ts int64, seq int) []byte {
		buf = append(buf, '{')
		if dev {
			buf = append(buf, `"dev":"`...)
			buf = append(buf, e.dev...)
			buf = append(buf, `",`...)
		}
		buf = append(buf, `"ts":`...)
		buf = strconv.AppendInt(buf, ts, 10)
		buf = append(buf, `,"seq":`...)
		buf = strconv.AppendInt(buf, int64(seq), 10)
		buf = append(buf, e.ch...)
		buf = append(buf, `,"m":{`...)
		buf = append(buf, e.m...)
		return append(buf, "}}"...)
	}
	for _, c := range []struct {
		name, topic string
		readings    int
	}{
		{"single", "fw/v1/up/el-1/telemetry", 1},
		{"batch10", "fw/v1/up/gw/gw-1/batch", len(batch)},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, lines, _, stats := newTestPipeline(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go p.clock.run(ctx) // as the service runs it
			payload := make([]byte, 0, 4096)
			ts := time.Now().Add(-time.Hour).UnixMilli()
			seq := 0
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				ts++
				payload = payload[:0]
				if c.readings == 1 {
					seq++
					payload = appendElem(payload, elem{"el-1", "", `"residual_current_ma":132.5`}, false, ts, seq)
				} else {
					payload = append(payload, `{"readings":[`...)
					for k, e := range batch {
						if k > 0 {
							payload = append(payload, ',')
						}
						seq++ // one counter for all: each device's seqs rise
						payload = appendElem(payload, e, true, ts, seq)
					}
					payload = append(payload, "]}"...)
				}
				lines.b = lines.b[:0]
				p.handle(c.topic, payload)
				n += c.readings
			}
			if got := testutil.ToFloat64(stats.Readings); got != float64(n) {
				b.Fatalf("%v readings accepted of %d sent: the benchmark would measure rejections", got, n)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// A late or duplicate message (a gateway's replay) says nothing about the
// device now: it does not move its liveness or its battery trend.
func TestReplaysDoNotTouchLiveness(t *testing.T) {
	p, _, events, _ := newTestPipeline(t)
	live, err := newLiveness(DefaultLiveness(), p.dec.Ledger(), newLivenessAlarms(p.dec.Ledger(), events), time.Now().UnixMilli(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.live = live
	d, _ := p.dec.Ledger().LookupID("sm-1")
	now := time.Now().UnixMilli()
	msg := func(ts int64, seq int, battery float64) {
		p.handle("fw/v1/up/sm-1/status", fmt.Appendf(nil, `{"ts":%d,"seq":%d,"m":{"battery_pct":%g}}`, ts, seq, battery))
	}
	msg(now, 10, 80)
	msg(now-60_000, 5, 15) // late: a replay of an earlier reading
	msg(now, 10, 80)       // duplicate
	if st := live.Status(d.Index); st.Battery != 80 || st.BatteryAvg != 80 {
		t.Fatalf("battery %v (avg %v) after replays, want 80", st.Battery, st.BatteryAvg)
	}
	msg(now+1000, 11, 70)
	if st := live.Status(d.Index); st.Battery != 70 {
		t.Fatalf("a fresh report was not recorded: battery %v", st.Battery)
	}
}
